"""text_data: the transfer set of real English sentences, split train/val/test by a seeded hash (edgekd.text.corpus).

Used with ``data: {source: none}`` (no image data stage). ``source: stdlib`` reads the docstrings of this Python's
standard library; ``source: file`` a user's ``.txt`` (one sentence per line) or ``.jsonl`` (``text``, ``label``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from edgekd.core.artifacts import Dataset
from edgekd.core.config import StageConfig
from edgekd.core.fsutil import atomic_write_json
from edgekd.stages.base import register_stage
from edgekd.text.corpus import build_corpus


class TextDataConfig(StageConfig):
    source: Literal["stdlib", "file"] = Field(
        "stdlib", description="stdlib (sentences from Python's own documentation) or file (one sentence per line)"
    )
    path: str | None = Field(None, description="source: file — a .txt (one sentence per line) or .jsonl file")
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="share of sentences held out for validation (seeded hash split)"
    )
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of sentences held out for test")
    split_seed: int = Field(0, description="the split's own seed, independent of the pipeline seed")
    max_sentences: int | None = Field(None, ge=30, description="a seeded subsample of at most this many sentences")
    on_bad_line: Literal["skip", "fail"] = Field("skip", description="non-UTF-8 / malformed lines: count or stop")
    transfer_packages: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="installed top-level packages whose docstrings are added to the training split only (read from "
        "their files, never imported)",
    )

    @model_validator(mode="after")
    def _path(self) -> TextDataConfig:
        if self.source == "file" and not self.path:
            raise ValueError("text source 'file' needs 'path' (a .txt or .jsonl file)")
        return self


@register_stage("text_data", TextDataConfig, lambda cfg, store: [], seeded=False)
def run_text_data(cfg: TextDataConfig, ctx, inputs) -> list[Dataset]:
    """Build and split the corpus; every skipped line is counted in the notes."""
    corpus = build_corpus(
        cfg.source,
        cfg.path,
        seed=cfg.split_seed,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        max_sentences=cfg.max_sentences,
        on_bad_line=cfg.on_bad_line,
        transfer_packages=cfg.transfer_packages,
    )
    extra = f" + docstrings of {', '.join(cfg.transfer_packages)} (training only)" if cfg.transfer_packages else ""
    ctx.note(f"text: {corpus.source} ({corpus.licence}){extra}, counts {corpus.counts}")
    path = atomic_write_json(ctx.out_dir / "corpus.json", corpus.to_json())
    return [
        Dataset("text_dataset", path, {"source": corpus.source, "licence": corpus.licence, "counts": corpus.counts})
    ]

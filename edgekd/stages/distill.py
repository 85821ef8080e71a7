"""distill: teach a small student from the teacher's soft targets plus the hard labels (Hinton et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.config import ModelSpec, StageConfig, TrainConfig
from edgekd.data import SplitData
from edgekd.distill import hinton_loss
from edgekd.models import build_model
from edgekd.models.io import load_torch_model, save_torch_model
from edgekd.stages.base import register_stage, require
from edgekd.train import accuracy, fit, seed_everything


class DistillConfig(StageConfig):
    student: ModelSpec = Field(default_factory=lambda: ModelSpec(name="mobilenetv2_student"))
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target term; 1 - alpha on hard labels")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=20))
    baseline: bool = Field(True, description="also train the same student from scratch (no teacher)")


def _inputs(cfg: DistillConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset", "teacher")


@register_stage("distill", DistillConfig, _inputs)
def run_distill(cfg: DistillConfig, ctx, inputs) -> list:
    """Distil the teacher into the student; optionally train a scratch baseline with the same recipe."""
    data = SplitData.load(inputs["dataset"].path)
    device = ctx.device()
    teacher = load_torch_model(inputs["teacher"]).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def kd(logits, y, x):
        with torch.inference_mode():
            t_logits = teacher(x)
        return hinton_loss(logits, t_logits.clone(), y, cfg.temperature, cfg.alpha, cfg.train.label_smoothing)

    def hard(logits, y, _x):
        return F.cross_entropy(logits, y, label_smoothing=cfg.train.label_smoothing)

    def train_one(name: str, loss_fn, desc: str, **extra):
        # student and baseline start from the same initial weights and see the same batches
        seed_everything(ctx.seed)
        model = build_model(cfg.student.as_dict(), data.input_shape[1], data.num_classes)
        res = fit(model, data, cfg.train, ctx.pipeline.data.augment, ctx.seed, loss_fn, desc, device,
                  checkpoint=ctx.checkpoint(name))  # fmt: skip
        model.cpu()
        val = accuracy(model, data, "val")
        ctx.note(f"{desc}: val accuracy {val:.4f} (best epoch {res.best_epoch})")
        return save_torch_model(name, model, cfg.student.as_dict(), data.meta(), ctx.out_dir / f"{name}.pt",
                                role=name, val_accuracy=val, history=res.history, **extra)  # fmt: skip

    outputs = [train_one("student", kd, "distill", temperature=cfg.temperature, alpha=cfg.alpha)]
    if cfg.baseline:
        outputs.append(train_one("baseline", hard, "baseline (scratch)"))
    return outputs

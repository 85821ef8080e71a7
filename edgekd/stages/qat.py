"""qat: quantization-aware fine-tuning with the teacher's soft targets still in the loss.

Reads a torch artifact (``model``, default ``student``; ``student_pruned`` after a prune stage) and the teacher;
writes ``output`` (default ``student_qat``): the BatchNorm-folded float weights *and* the trained fake-quant state
(scales, zero points, observed ranges) in one weights-only file. export_onnx and convert_tflite turn it into int8
files that use those learned ranges (edgekd.compress.qat_export) — no new calibration. See edgekd.compress.qat for
the PT2E path and why.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from edgekd.compress.finetune import kd_loss_fn, load_float_model, load_teacher
from edgekd.core.artifacts import TorchModel
from edgekd.core.config import NOT_MINE, StageConfig, TrainConfig
from edgekd.core.stage import register_stage, require
from edgekd.data import normalize
from edgekd.models.io import save_torch_model
from edgekd.training.loop import accuracy, fit


class QatConfig(StageConfig):
    model: str = Field("student", description="torch artifact to fine-tune (student_pruned after a prune stage)")
    teacher: str | None = Field("teacher", description="artifact whose soft targets stay in the loss; null = labels")
    output: str = Field(
        "student_qat", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="name of the quantization-aware fine-tuned model"
    )
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature of the teacher's soft targets")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target loss (1 - alpha: hard labels)")
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=4, lr=5e-4),
        description="fine-tuning recipe (a few epochs at a low learning rate)",
    )
    observe_epochs: int | None = Field(
        None, ge=0, description="epochs in which observers learn ranges before they freeze (default: all but the last)"
    )

    def model_spec(self, artifact, spec_before):
        return spec_before(self.model) if artifact == self.output else NOT_MINE

    @field_validator("observe_epochs")
    @classmethod
    def _not_after_end(cls, v: int | None, info: ValidationInfo) -> int | None:
        train = info.data.get("train")
        if v is not None and train is not None and v > train.epochs:
            stage = info.data.get("name") or info.data.get("stage") or "qat"
            raise ValueError(f"stage '{stage}': observe_epochs ({v}) is more than train.epochs ({train.epochs})")
        return v


def _inputs(cfg: QatConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset", cfg.model, *([cfg.teacher] if cfg.teacher else []))


def _check(cfg: QatConfig, pipeline) -> list[str]:
    from edgekd.compress.checks import check_qat

    return check_qat(cfg, pipeline)


# revision 1: add/mul/cat/hardswish/mean annotated by edgekd and hardsigmoid rewritten (another fake-quant graph)
@register_stage("qat", QatConfig, _inputs, ("torchao", "litert-torch"), check=_check, revision=1)
def run_qat(cfg: QatConfig, ctx, inputs) -> list:
    """Fold BatchNorm, fake-quantize weights and activations, fine-tune with distillation, save weights + ranges."""
    from edgekd.compress import qat
    from edgekd.compress.structure import describe
    from edgekd.models import build_model

    data, device, art, model = load_float_model(
        cfg.model, inputs, ctx, "is already quantization-aware trained; give the float model"
    )
    spec = art.meta["model"]
    example = normalize(torch.from_numpy(np.array(data.arrays["train"][0][:2])), data.mean, data.std)
    qat.check_quantizable(model, example)
    float_val = accuracy(model, data, "val")
    folded = qat.fold_batchnorm(model, example)
    folded_val = accuracy(model, data, "val")
    observe = cfg.observe_epochs if cfg.observe_epochs is not None else max(cfg.train.epochs - 1, 1)
    qm = qat.QatModel(qat.prepare(model, example, dynamic=True), observe)
    teacher = load_teacher(inputs.get(cfg.teacher) if cfg.teacher else None, device)
    loss_fn = kd_loss_fn(teacher, cfg.temperature, cfg.alpha, cfg.train.label_smoothing)
    res = fit(qm, data, cfg.train, ctx.pipeline.data.augment, ctx.seed, loss_fn, "qat", device,
              checkpoint=ctx.checkpoint("qat"))  # fmt: skip
    qm.cpu().eval()
    fq_val = accuracy(qm, data, "val")
    float_state, qat_state = qat.split_state(model, qm.graph)
    model.load_state_dict(float_state)
    model.eval()
    ctx.note(
        f"qat: {len(folded)} BatchNorms folded (val {float_val:.4f} -> {folded_val:.4f}); fake-quant val accuracy "
        f"{fq_val:.4f} (best epoch {res.best_epoch}), float weights alone {accuracy(model, data, 'val'):.4f}"
    )
    shape = tuple(data.input_shape)
    structure = describe(model, build_model(spec, shape[1], data.num_classes, pretrained=False))
    record = {
        "path": qat.PATH,
        "quantizer": qat.QUANTIZER,
        "folded_batchnorms": len(folded),
        "observe_epochs": observe,
        "fake_quant_val_accuracy": fq_val,
        "float_val_accuracy_before": float_val,
        "fake_quants": len(qat.fake_quants(qat_state)),
    }
    path = ctx.out_dir / f"{cfg.output}.pt"
    saved = save_torch_model(cfg.output, model, spec, data.meta(), path, role=cfg.output, source=cfg.model,
                             structure=structure, qat=record, best_epoch=res.best_epoch, history=res.history,
                             val_accuracy=fq_val)  # fmt: skip
    qat.write_checkpoint(path, float_state, qat_state)  # replaces the plain state_dict save_torch_model wrote
    return [TorchModel(cfg.output, path, saved.meta)]

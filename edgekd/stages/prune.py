"""prune: channel pruning with distillation fine-tuning after each step; the result is a smaller dense model.

Reads a torch artifact (``model``, default ``student``) and the teacher, writes ``output`` (default
``student_pruned``): a plain state_dict plus the changed layer shapes in its metadata (edgekd.compress.structure),
so export_onnx, convert_tflite and benchmark take it like any other student.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgekd.compress.finetune import kd_loss_fn, load_float_model, load_teacher
from edgekd.core import console
from edgekd.core.config import NOT_MINE, StageConfig, TrainConfig
from edgekd.core.stage import register_stage, require
from edgekd.data import SplitData, normalize
from edgekd.models.io import save_torch_model
from edgekd.training.loop import accuracy, fit


def _stage_of(info: ValidationInfo) -> str:
    return str(info.data.get("name") or info.data.get("stage") or "prune")


class PruneConfig(StageConfig):
    model: str = Field("student", description="torch artifact to prune")
    teacher: str | None = Field("teacher", description="artifact whose soft targets guide fine-tuning; null = labels")
    output: str = Field("student_pruned", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="name of the pruned model")
    mode: Literal["structured", "unstructured"] = Field(
        "structured",
        description="structured removes channels (really faster); unstructured zeroes weights (sparsity only)",
    )
    importance: Literal["l1", "l2", "taylor", "bn_scale"] = Field(
        "taylor", description="how channels are ranked: weight norm (l1, l2), first-order Taylor, or BatchNorm scale"
    )
    ratio: float | None = Field(
        None, description="channels removed per layer (global: overall); unstructured: sparsity"
    )
    macs_reduction: float | None = Field(None, description="fraction of MACs to remove (structured only)")
    global_pruning: bool = Field(False, description="rank channels across layers instead of the same ratio per layer")
    max_layer_ratio: float = Field(0.75, description="no layer loses more than this fraction of its channels")
    ignore_layers: list[str] = Field(default_factory=list, description="layers (by name) whose outputs are kept")
    round_to: int | None = Field(8, ge=1, le=1024, description="channel counts kept at multiples of this")
    steps: int = Field(3, ge=1, le=100, description="prune -> fine-tune rounds")
    temperature: float = Field(
        4.0, gt=0, le=100, description="softmax temperature of the teacher's soft targets during fine-tuning"
    )
    alpha: float = Field(
        0.7, ge=0, le=1, description="weight of the soft-target loss (1 - alpha: hard labels) during fine-tuning"
    )
    finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=4), description="per step")
    taylor_batches: int = Field(4, ge=1, le=1000, description="training batches whose gradients rank channels")

    def model_spec(self, artifact, spec_before):
        return spec_before(self.model) if artifact == self.output else NOT_MINE

    @field_validator("ratio", "macs_reduction", "max_layer_ratio")
    @classmethod
    def _open_unit(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and not 0.0 < v < 1.0:
            raise ValueError(f"stage '{_stage_of(info)}': {info.field_name} must be strictly between 0 and 1 (got {v})")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> PruneConfig:
        if self.ratio is None and self.macs_reduction is None:
            self.macs_reduction = 0.5 if self.mode == "structured" else None
            self.ratio = 0.5 if self.mode == "unstructured" else None
        if self.ratio is not None and self.macs_reduction is not None:
            raise ValueError(f"stage '{self.id}': give either ratio or macs_reduction, not both")
        if self.mode == "unstructured" and self.macs_reduction is not None:
            raise ValueError(
                f"stage '{self.id}': macs_reduction: unstructured pruning removes no MACs in a dense runtime; "
                "use ratio (the sparsity) or mode: structured"
            )
        return self


def _inputs(cfg: PruneConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset", cfg.model, *([cfg.teacher] if cfg.teacher else []))


def train_batches(data: SplitData, n: int, batch_size: int, seed: int):
    """``n`` normalised training batches picked with ``seed`` (the data the Taylor criterion's gradients come from)."""
    x, y = data.arrays["train"]
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randperm(len(y), generator=g)[:batch_size].sort().values.numpy()
        yield normalize(torch.from_numpy(np.array(x[idx])), data.mean, data.std), torch.from_numpy(np.array(y[idx]))


def _check(cfg: PruneConfig, pipeline) -> list[str]:
    from edgekd.compress.checks import check_prune

    return check_prune(cfg, pipeline)


@register_stage("prune", PruneConfig, _inputs, ("torch-pruning",), check=_check)
def run_prune(cfg: PruneConfig, ctx, inputs) -> list:
    """Prune in ``steps`` rounds, each followed by distillation fine-tuning; save a dense, smaller model."""
    from edgekd.compress import pruning
    from edgekd.compress.structure import check_rebuild, describe
    from edgekd.models import build_model
    from edgekd.models.stats import count_macs, count_params

    data, device, art, model = load_float_model(
        cfg.model, inputs, ctx, "is quantization-aware trained; prune the float model, then run qat"
    )
    spec = art.meta["model"]
    teacher = load_teacher(inputs.get(cfg.teacher) if cfg.teacher else None, device)
    loss_fn = kd_loss_fn(teacher, cfg.temperature, cfg.alpha, cfg.finetune.label_smoothing)
    shape = tuple(data.input_shape)
    before = {
        "macs": count_macs(model, shape),
        "params": count_params(model),
        "val_accuracy": accuracy(model, data, "val"),
    }
    example = normalize(torch.from_numpy(np.array(data.arrays["train"][0][:1])), data.mean, data.std)
    history: list[dict] = []
    target = {"ratio": cfg.ratio} if cfg.ratio is not None else {"macs_reduction": cfg.macs_reduction}
    importance = cfg.importance if cfg.mode == "structured" else "l1 (per weight, global)"
    record: dict = {"mode": cfg.mode, "importance": importance, **target, "before": before, "steps": history}

    for k in range(1, (cfg.steps if cfg.mode == "structured" else 1) + 1):  # the stage ETA covers every fine-tune
        console.will_train(f"prune step {k}/{cfg.steps} fine-tune", cfg.finetune.epochs)

    def finetune(k: int) -> dict:
        res = fit(model, data, cfg.finetune, ctx.pipeline.data.augment, ctx.seed + k, loss_fn,
                  f"prune step {k}/{cfg.steps} fine-tune", device, checkpoint=ctx.checkpoint(f"step{k}"))  # fmt: skip
        model.cpu()
        return {"val_accuracy": accuracy(model, data, "val"), "best_epoch": res.best_epoch}

    if cfg.mode == "structured":
        settings = pruning.PruneSettings(cfg.importance, cfg.ratio, cfg.macs_reduction, cfg.global_pruning,
                                         cfg.max_layer_ratio, cfg.round_to, cfg.steps)  # fmt: skip
        pruner = pruning.ChannelPruner(model, example, settings, cfg.ignore_layers)
        record["kept_whole"] = sorted({*cfg.ignore_layers, *([pruner.head] if pruner.head else [])})

        def gradients() -> None:
            model.train()
            for xb, yb in train_batches(data, cfg.taylor_batches, cfg.finetune.batch_size, ctx.seed):
                loss_fn(model(xb), yb, xb).backward()

        for k in range(1, cfg.steps + 1):
            info = pruner.step(k, gradients if cfg.importance == "taylor" else None)
            info.update(finetune(k))
            history.append(info)
            ctx.note(
                f"prune step {k}: {info['macs']:,} MACs, {info['params']:,} params, val {info['val_accuracy']:.4f}"
            )
        record["channels"] = pruning.channel_counts(model)
        structure = describe(model, build_model(spec, shape[1], data.num_classes, pretrained=False))
        check_rebuild(model, build_model(spec, shape[1], data.num_classes, pretrained=False), structure)
    else:
        params = pruning.mask_unstructured(model, float(cfg.ratio), cfg.ignore_layers)
        history.append({"step": 1, **finetune(1)})
        record["sparsity"] = pruning.remove_masks(params)
        record["note"] = "unstructured: zeros in dense tensors; onnxruntime and LiteRT run it no faster"
        structure = art.meta.get("structure") or {}
        ctx.note(f"unstructured pruning: {record['sparsity']:.1%} of conv/linear weights are zero (no speed-up)")
    model.cpu().eval()
    after_macs = count_macs(model, shape)
    fewer = 1 - after_macs / before["macs"]
    ctx.note(f"{cfg.model} -> {cfg.output}: MACs {before['macs']:,} -> {after_macs:,} ({fewer:.1%} fewer), "
             f"params {before['params']:,} -> {count_params(model):,}")  # fmt: skip
    extra = {"structure": structure} if structure else {}
    return [
        save_torch_model(
            cfg.output,
            model,
            spec,
            data.meta(),
            ctx.out_dir / f"{cfg.output}.pt",
            role=cfg.output,
            source=cfg.model,
            val_accuracy=accuracy(model, data, "val"),
            pruning=record,
            **extra,
        )
    ]

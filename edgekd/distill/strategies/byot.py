"""byot: "Be Your Own Teacher" self-distillation (Zhang et al. 2019) — shallow auxiliary heads taught by the deepest.

No external teacher. Auxiliary classifiers are attached with forward hooks to named student layers (``heads``), so
the student's code is not changed. Each head (1x1 conv bottleneck, 3x3 conv, global pooling, a projection to the
size of the student's own penultimate feature, a linear classifier) learns from the labels, from the deepest
output's soft targets and, with ``feature_weight``, from the deepest feature (an L2 hint). The deepest output learns
from the labels only; the shallow heads' gradients flow into the student's early layers, which is what regularises
it. Per head: ``(1 - alpha) * CE + alpha * T^2 * KL(deep_T || head_T) + feature_weight * ||f_head - f_deep||^2``,
the deepest output and feature detached (teachers, never pulled towards the heads).

The heads live in a wrapper module, never in the student: the saved student is the plain student.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.distill.losses import soft_target_loss
from edgekd.distill.strategies.base import StrategyConfig, StrategyResult, register_strategy
from edgekd.distill.taps import FeatureTaps


class BYOTConfig(StrategyConfig):
    kind: Literal["byot"] = "byot"
    heads: list[str] = Field(min_length=1, max_length=8, description="student layers to attach auxiliary heads to")
    head_width: int = Field(64, ge=1, le=4096, description="channels of each head's bottleneck")
    feature_weight: float = Field(0.03, ge=0, le=1e6, description="weight of the hint to the deepest feature")


def classifier_of(model: nn.Module) -> nn.Linear | None:
    """The student's last Linear layer: its input is the deepest feature, its output the logits."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


class AuxHead(nn.Module):
    def __init__(self, channels: int, width: int, feat_dim: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.proj = nn.Linear(width, feat_dim)
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.proj(self.body(x))
        return feat, self.fc(F.relu(feat))


class SelfDistillModule(nn.Module):
    """Student + auxiliary heads. ``forward`` is the student's (hooks capture the head inputs and the deepest
    feature); ``loss`` scores every head against the deepest output."""

    def __init__(self, student: nn.Module, scfg: BYOTConfig, temperature: float, alpha: float, smoothing: float,
                 sample_input: torch.Tensor):  # fmt: skip
        super().__init__()
        self.student = student
        self.names = list(scfg.heads)
        self.temperature, self.alpha, self.smoothing, self.feature_weight = (
            temperature,
            alpha,
            smoothing,
            scfg.feature_weight,
        )
        self._taps = FeatureTaps(student, self.names, "the student")
        fc = classifier_of(student)
        if fc is None:
            raise ConfigError("strategy 'byot' needs a student whose classifier is a Linear layer (none found)")
        self._deep: torch.Tensor | None = None
        self._pre = fc.register_forward_pre_hook(self._keep_deep)
        was = student.training
        student.eval()
        with torch.no_grad():
            logits = student(sample_input)
        student.train(was)
        shapes = {k: v.shape for k, v in self._taps.take().items()}
        bad = [f"'{k}' gives {tuple(s)}" for k, s in shapes.items() if len(s) != 4]
        if bad:
            raise ConfigError(f"strategy 'byot' attaches heads to N x C x H x W feature maps: {', '.join(bad)}")
        self.heads = nn.ModuleList(
            AuxHead(shapes[n][1], scfg.head_width, fc.in_features, logits.shape[1]) for n in self.names
        )

    def _keep_deep(self, _module, inputs) -> None:
        self._deep = inputs[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def head_outputs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        feats = self._taps.take()
        return [head(feats[n]) for n, head in zip(self.names, self.heads, strict=True)]

    def loss(self, logits: torch.Tensor, y: torch.Tensor, _x: torch.Tensor) -> torch.Tensor:
        deep_feat, self._deep = self._deep, None
        total = F.cross_entropy(logits, y, label_smoothing=self.smoothing)
        teacher = logits.detach()
        for feat, head_logits in self.head_outputs():
            total = total + (1 - self.alpha) * F.cross_entropy(head_logits, y, label_smoothing=self.smoothing)
            total = total + self.alpha * soft_target_loss(head_logits, teacher, self.temperature)
            if self.feature_weight:
                total = total + self.feature_weight * (feat - deep_feat.detach().flatten(1)).pow(2).sum(1).mean()
        return total

    def remove_hooks(self) -> None:
        self._taps.remove()
        self._pre.remove()


@torch.no_grad()
def head_accuracy(module: SelfDistillModule, data, split: str = "val") -> list[float]:
    """Top-1 of each auxiliary head (early exits) on a split; reported, never exported."""
    from edgekd.data import normalize

    module.eval()
    x, y = data.arrays[split]
    correct = torch.zeros(len(module.heads))
    for i in range(0, len(y), 256):
        module(normalize(torch.from_numpy(x[i : i + 256].copy()), data.mean, data.std))
        target = torch.from_numpy(y[i : i + 256])
        for h, (_f, out) in enumerate(module.head_outputs()):
            correct[h] += (out.argmax(1) == target).sum()
    return [round(float(c) / len(y), 5) for c in correct]


def _check(scfg: BYOTConfig, cfg, pipeline) -> list[str]:
    from edgekd.distill.taps import check_layers
    from edgekd.models import build_model

    channels, classes = pipeline.data.model_io()
    student = build_model(cfg.student.as_dict(), channels, classes)
    errors = check_layers(student, scfg.heads, "the student")
    if classifier_of(student) is None:
        errors.append("strategy 'byot' needs a student whose classifier is a Linear layer (none found)")
    return errors


@register_strategy("byot", BYOTConfig, needs_teacher=False, check=_check)
def run_byot(scfg: BYOTConfig, env) -> StrategyResult:
    cfg = env.cfg
    student = env.new_student()
    sample = env.sample_input()  # two training images: only their shapes are used, to size the heads
    module = SelfDistillModule(student, scfg, cfg.temperature, cfg.alpha, cfg.train.label_smoothing, sample)
    res = env.fit(module, "byot", f"self-distillation (BYOT, {len(scfg.heads)} heads)")
    module.cpu()
    heads = dict(zip(scfg.heads, head_accuracy(module, env.data), strict=True))
    module.remove_hooks()
    meta = {"best_epoch": res.best_epoch, "history": res.history, "head_val_accuracy": heads}
    return StrategyResult(student, meta)

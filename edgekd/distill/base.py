"""The pieces every distillation method is built from.

A method is either a **loss term** (a small module that scores one aspect of the student against the teacher: soft
targets, features, attention, relations...) or a **strategy** (how training is organised: a fixed teacher, a cohort
learning together, generations, synthetic data). Terms are combined as a weighted sum (like torchdistill's
WeightedSumLoss); a strategy decides which models exist and calls the one training loop, ``edgekd.training.loop.fit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pydantic import Field
from torch import nn

from edgekd.core.config import Strict
from edgekd.core.registry import Registry


@dataclass
class Batch:
    """Everything a loss term may look at for one training step."""

    x: torch.Tensor  # normalised inputs
    y: torch.Tensor  # hard labels
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None = None  # one tensor even with several teachers (see multi-teacher)
    student_feats: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_feats: dict[str, torch.Tensor] = field(default_factory=dict)
    # per-sample weight of the teacher-driven terms, e.g. 0 where purification dropped the teacher's knowledge
    sample_weight: torch.Tensor | None = None


class TermConfig(Strict):
    """Fields every loss term has; each term subclasses this with ``kind: Literal[...]`` and its own keys."""

    kind: str
    weight: float = Field(1.0, ge=0, le=1e6, description="weight of this term in the sum")


class LossTerm(nn.Module):
    """One weighted part of the distillation objective. Its parameters (adapters) train with the student."""

    needs_teacher: bool = True

    def __init__(self, cfg: TermConfig):
        super().__init__()
        self.cfg = cfg

    def student_layers(self) -> list[str]:
        return []

    def teacher_layers(self) -> list[str]:
        return []

    def build(self, student_shapes: dict[str, torch.Size], teacher_shapes: dict[str, torch.Size]) -> None:
        """Create adapters once the feature shapes are known (called once, after a dummy forward pass)."""

    def forward(self, b: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class TermSpec:
    config_cls: type[TermConfig]
    term_cls: type[LossTerm]


LOSSES: Registry[TermSpec] = Registry("distillation loss")


def register_loss(kind: str, config_cls: type[TermConfig]):
    """Class decorator: ``@register_loss("feature", FeatureConfig) class FeatureTerm(LossTerm)``."""

    def deco(term_cls: type[LossTerm]) -> type[LossTerm]:
        LOSSES.register(kind)(TermSpec(config_cls, term_cls))
        return term_cls

    return deco


def weighted_mean(per_sample: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over the batch, or the weighted mean when some samples count less (or not at all)."""
    if weight is None:
        return per_sample.mean()
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-8)

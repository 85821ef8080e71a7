"""Heterogeneous distillation in the logit space (OFA-KD, Hao et al. 2023, "One-for-All").

A CNN's and a ViT's intermediate features live in different spaces (maps vs tokens, local vs global), so matching
them directly is a weak signal. OFA instead projects student intermediate features into the **logit space**, where
every architecture agrees, and distils there: each named student layer gets a small branch head (features laid as a
map, see ``features.to_map``; 1x1 conv + BatchNorm + ReLU, global average pooling, linear to the classes) whose logits
learn the teacher's with the OFA loss

    L = -sum_c ((p_t,c + 1[c = y])^eps - 1[c = y]) * log p_s,c

which is cross-entropy with the teacher's distribution (KD up to a constant) at eps = 1, and gives the true class
more weight for eps > 1 (the paper uses 1 to 1.5). The branch heads train with the student and are never exported.

The term is the **mean** over the branches (and over samples, with purification's sample weights), where the paper
and the authors' code **sum** the branch losses: with k student layers, ``weight: w`` here equals weight ``w / k``
there. Averaging keeps the term's scale, and so a tuned ``weight``, independent of how many layers are named.
For token <-> feature-map matching of intermediate layers, combine with the ``feature`` term.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.distill.base import Batch, LossTerm, TermConfig, register_loss, weighted_mean
from edgekd.distill.features import map_shape, shape_of, to_map


class OFAConfig(TermConfig):
    kind: Literal["ofa"] = "ofa"
    student_layers: list[str] = Field(min_length=1, description="student layers given a branch head to the logits")
    eps: float = Field(1.0, ge=0, le=10, description="target-class enhancement exponent (1 = plain KD)")
    temperature: float = Field(1.0, gt=0, le=100, description="softmax temperature of the branch losses")
    hidden: int = Field(128, ge=1, le=65_536, description="channels of the branch head")


def ofa_loss(student_logits, teacher_logits, labels, eps: float, temperature: float = 1.0) -> torch.Tensor:
    """Per-sample OFA loss, as in the authors' code: (N,)."""
    target = F.one_hot(labels, student_logits.shape[1]).to(student_logits.dtype)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    coef = (p_t + target).pow(eps) - target
    return -(coef * F.log_softmax(student_logits / temperature, dim=1)).sum(1)


class BranchHead(nn.Sequential):
    def __init__(self, cin: int, hidden: int, num_classes: int):
        super().__init__(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(hidden, num_classes),
        )


@register_loss("ofa", OFAConfig)
class OFATerm(LossTerm):
    cfg: OFAConfig

    def student_layers(self) -> list[str]:
        return list(self.cfg.student_layers)

    def build(self, student_shapes, teacher_shapes) -> None:
        classes = getattr(self, "num_classes", None)
        if classes is None:
            raise RuntimeError("the ofa term needs num_classes before build (set by DistillModule)")
        heads = []
        for name in self.cfg.student_layers:
            c, _, _ = map_shape(shape_of(student_shapes, name, "student"), f"student layer '{name}'")
            heads.append(BranchHead(c, self.cfg.hidden, classes))
        self.heads = nn.ModuleList(heads)

    def forward(self, b: Batch) -> torch.Tensor:
        """Mean over branches of the per-sample OFA loss (the paper sums them: see the module docstring)."""
        per_sample = 0.0
        for name, head in zip(self.cfg.student_layers, self.heads, strict=True):
            logits = head(to_map(b.student_feats[name]))
            per_sample = per_sample + ofa_loss(logits, b.teacher_logits, b.y, self.cfg.eps, self.cfg.temperature)
        return weighted_mean(per_sample / len(self.heads), b.sample_weight)

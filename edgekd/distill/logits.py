"""Extra logit-level terms: a second soft-target term (its own temperature), e.g. for a cohort or an ensemble."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from edgekd.distill.base import Batch, LossTerm, TermConfig, register_loss
from edgekd.distill.losses import soft_target_loss


class KDTermConfig(TermConfig):
    kind: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature of the soft targets")


@register_loss("kd", KDTermConfig)
class KDTerm(LossTerm):
    """Soft-target KL at its own temperature (Hinton et al. 2015), weighted per sample when purification says so."""

    def forward(self, b: Batch) -> torch.Tensor:
        return soft_target_loss(b.student_logits, b.teacher_logits, self.cfg.temperature, b.sample_weight)

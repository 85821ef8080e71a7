"""Soft targets (Hinton et al. 2015), the base every other method adds to."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged over the batch (weighted per sample when ``weight`` is given).

    The T^2 factor keeps the gradient scale of the soft term comparable to the hard-label term as T changes.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    if weight is None:
        return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)
    per_sample = F.kl_div(log_p_s, p_t, reduction="none").sum(1)
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-8) * (t * t)


def hinton_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``alpha`` * soft-target loss + (1 - ``alpha``) * cross-entropy on the hard labels."""
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if alpha == 0.0:
        return hard
    return alpha * soft_target_loss(student_logits, teacher_logits, temperature, weight) + (1.0 - alpha) * hard

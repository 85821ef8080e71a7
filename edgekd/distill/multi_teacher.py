"""Multi-teacher distillation: several teachers (any architectures) give one soft target.

The teachers' softened distributions are averaged, p = sum_i w_i softmax(z_i / T), with either fixed weights
(``teacher_weighting: fixed``, ``teacher_weights``; equal by default; the ensemble average of Hinton et al. 2015 and
You et al. 2017) or weights set per sample by each teacher's confidence (``confidence``: w_i(x) proportional to the
fixed weight times the teacher's top-class probability at T = 1, so the teacher that is sure of a sample speaks
loudest for it, in the spirit of confidence-aware multi-teacher KD, Zhang et al. 2022).

The average is handed on as logits T * log p: softmax of those at temperature T is p exactly, so the Hinton base
term (and anything else reading ``Batch.teacher_logits``) works unchanged. Computed in log space (logsumexp), so a
class that every teacher rules out does not produce log 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from edgekd.core.errors import ConfigError

Weighting = Literal["fixed", "confidence"]


def teacher_weights(logits: list[torch.Tensor], weighting: Weighting, fixed: list[float] | None = None) -> torch.Tensor:
    """(K, N) weights of K teachers for N samples, each column summing to 1."""
    k, n = len(logits), logits[0].shape[0]
    if fixed is not None and len(fixed) != k:
        raise ConfigError(f"teacher_weights has {len(fixed)} values for {k} teachers")
    base = torch.tensor(fixed if fixed is not None else [1.0] * k, dtype=logits[0].dtype, device=logits[0].device)
    w = base[:, None].expand(k, n)
    if weighting == "confidence":
        conf = torch.stack([F.softmax(z, dim=1).amax(1) for z in logits])  # (K, N) at T = 1
        w = w * conf
    return w / w.sum(0, keepdim=True).clamp_min(1e-12)


def combine_teachers(
    logits: list[torch.Tensor], temperature: float, weighting: Weighting = "fixed", fixed: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T * log sum_i w_i softmax(z_i / T), the (K, N) weights used)."""
    w = teacher_weights(logits, weighting, fixed)
    log_p = torch.stack([F.log_softmax(z / temperature, dim=1) for z in logits])  # (K, N, C)
    mixed = torch.logsumexp(log_p + w.clamp_min(1e-30).log()[..., None], dim=0)
    if not math.isfinite(float(mixed.max())):  # pragma: no cover - guards against NaN teachers
        raise ConfigError("the teachers' combined soft targets are not finite (a teacher outputs NaN or inf)")
    return temperature * mixed, w

"""Knowledge purification: keep the teacher's mistakes and doubts from being taught.

A sample is flagged when the teacher is **wrong** (its top class is not the label), **unconfident** (its top-class
probability at T = 1 is below ``min_confidence``), or either (``when``). Flagged samples are then

* ``drop``: left out of every teacher-driven term (weight 0); the hard-label term still sees them;
* ``downweight``: weighted by the teacher's probability of the true label, so a confidently wrong teacher counts
  for almost nothing and a hesitant right one for something;
* ``correct``: the teacher's distribution is corrected toward the label, by ``swap`` (the logits of the teacher's
  top class and of the true class trade places: Knowledge Adjustment, Wen et al. 2019; the shape of the distribution
  is kept and the teacher becomes right; a no-op where it already was) or ``mix`` (p' = (1 - m) p_T + m one-hot(y) at
  the distillation temperature, as label-smoothing toward the truth).

With several teachers, purification reads the **combined** target (``multi_teacher.combine_teachers``), not each
teacher: "the teacher" above is the logits it hands on, T * log p with p = sum_i w_i softmax(z_i / T), and "at T = 1"
is softmax of those logits, i.e. p^T renormalised -- the combined target brought back to T = 1. Its top class is p's;
its confidence is neither p's own (at T) nor the average of the teachers' T = 1 probabilities (for one teacher all
three coincide with the teacher's T = 1 softmax). ``mix`` mixes p itself, at T.

Ideas from the literature on noisy or wrong teachers (Wen et al. 2019; Zhou et al. 2021 "Rethinking soft labels";
"knowledge purification" in multi-teacher KD). The stage counts what was purified on the training split and puts
the counts in the student's metadata; the report shows them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.core.config import Strict


class PurifyConfig(Strict):
    mode: Literal["drop", "downweight", "correct"] = Field("drop", description="what to do with flagged samples")
    when: Literal["wrong", "unconfident", "wrong_or_unconfident"] = Field("wrong", description="which are flagged")
    min_confidence: float = Field(0.5, gt=0, lt=1, description="top-class probability below which it is unconfident")
    correction: Literal["swap", "mix"] = Field("swap", description="mode correct: how the distribution is corrected")
    mix: float = Field(0.5, gt=0, le=1, description="correction mix: weight of the one-hot label")


def flags(teacher_logits: torch.Tensor, y: torch.Tensor, cfg: PurifyConfig) -> dict[str, torch.Tensor]:
    """Boolean (N,) masks: wrong, unconfident, flagged; probabilities are ``softmax(teacher_logits)`` at T = 1 of the
    logits given (with several teachers: the combined target's, see the module docstring)."""
    p = F.softmax(teacher_logits, dim=1)
    conf, pred = p.max(1)
    wrong, unsure = pred != y, conf < cfg.min_confidence
    flagged = {"wrong": wrong, "unconfident": unsure, "wrong_or_unconfident": wrong | unsure}[cfg.when]
    return {"wrong": wrong, "unconfident": unsure, "flagged": flagged}


def purify(
    teacher_logits: torch.Tensor, y: torch.Tensor, cfg: PurifyConfig, temperature: float
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """(teacher logits to teach with, per-sample weight or None, the flag masks)."""
    f = flags(teacher_logits, y, cfg)
    flagged = f["flagged"]
    if cfg.mode == "drop":
        return teacher_logits, (~flagged).to(teacher_logits.dtype), f
    if cfg.mode == "downweight":
        p_true = F.softmax(teacher_logits, dim=1).gather(1, y[:, None]).squeeze(1)
        return teacher_logits, torch.where(flagged, p_true, torch.ones_like(p_true)), f
    if cfg.correction == "swap":
        rows = torch.arange(len(y), device=y.device)
        top = teacher_logits.argmax(1)
        fixed = teacher_logits.clone()
        fixed[rows, y], fixed[rows, top] = teacher_logits[rows, top], teacher_logits[rows, y]
    else:
        p = F.softmax(teacher_logits / temperature, dim=1)
        p = (1 - cfg.mix) * p + cfg.mix * F.one_hot(y, p.shape[1]).to(p.dtype)
        fixed = temperature * p.clamp_min(1e-12).log()
    return torch.where(flagged[:, None], fixed, teacher_logits), None, f

"""The distillation objective: the Hinton base (alpha * soft targets + (1 - alpha) * labels) plus weighted terms.

``DistillModule`` is what the training loop optimises: the student plus whatever distillation adds only for training
(adapters inside the terms). Teachers are held outside the module's parameters, so they are never optimised and never
saved; after training only ``.student`` is kept, which is why every method's student exports unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgekd.distill.base import Batch, LossTerm
from edgekd.distill.losses import hinton_loss
from edgekd.distill.taps import FeatureTaps

# turns the teachers' raw logits (one tensor per teacher) and the batch into the teacher signal the terms see;
# multi-teacher combination and knowledge purification plug in here
TeacherSignal = Callable[[list[torch.Tensor], Batch], None]


class Objective(nn.Module):
    def __init__(self, temperature: float, alpha: float, label_smoothing: float, terms: list[LossTerm]):
        super().__init__()
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing
        self.terms = nn.ModuleList(terms)
        self._parts: dict[str, torch.Tensor] = {}

    def student_layers(self) -> list[str]:
        return list(dict.fromkeys(n for t in self.terms for n in t.student_layers()))

    def teacher_layers(self) -> list[str]:
        return list(dict.fromkeys(n for t in self.terms for n in t.teacher_layers()))

    def forward(self, b: Batch) -> torch.Tensor:
        if b.teacher_logits is None:
            total = torch.nn.functional.cross_entropy(b.student_logits, b.y, label_smoothing=self.label_smoothing)
        else:
            total = hinton_loss(
                b.student_logits, b.teacher_logits, b.y, self.temperature, self.alpha, self.label_smoothing,
                b.sample_weight,
            )  # fmt: skip
        # detached tensors, not floats: float() would wait for the device on every training step
        parts = {"base": total.detach()}
        for i, term in enumerate(self.terms):
            value = term(b)
            parts[f"{i}:{term.cfg.kind}"] = value.detach()
            total = total + term.cfg.weight * value
        self._parts = parts
        return total

    @property
    def last_parts(self) -> dict[str, float]:
        """Each part of the last step's loss (unweighted), for inspection and tests."""
        return {k: float(v) for k, v in self._parts.items()}


class DistillModule(nn.Module):
    """Student + training-only parts. ``forward`` is the student's; ``loss`` runs the teachers and the objective."""

    def __init__(
        self,
        student: nn.Module,
        objective: Objective,
        teachers: list[nn.Module],
        teacher_signal: TeacherSignal | None = None,
        sample_input: torch.Tensor | None = None,
    ):
        super().__init__()
        self.student = student
        self.objective = objective
        self._teachers = list(teachers)  # a plain list: not parameters, not in the state dict
        self._signal = teacher_signal
        self._s_taps = FeatureTaps(student, objective.student_layers(), "the student")
        # feature terms compare against the first teacher's layers
        self._t_taps = FeatureTaps(teachers[0], objective.teacher_layers(), "the teacher") if teachers else None
        if sample_input is not None:
            self._build_terms(sample_input)

    @torch.no_grad()
    def _build_terms(self, x: torch.Tensor) -> None:
        was = self.student.training
        self.student.eval()
        logits = self.student(x)
        s_shapes = {k: v.shape for k, v in self._s_taps.take().items()}
        t_shapes = {}
        if self._teachers:
            self._teachers[0](x)
            t_shapes = {k: v.shape for k, v in self._t_taps.take().items()}
        for term in self.objective.terms:
            term.num_classes = int(logits.shape[-1])  # for terms that project into the logit space (OFA heads)
            term.build(s_shapes, t_shapes)
        self.student.train(was)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b = Batch(x=x, y=y, student_logits=logits, student_feats=self._s_taps.take())
        if self._teachers:
            with torch.no_grad():  # not inference_mode: teacher tensors are saved for the student's backward
                raw = [t(x).float() for t in self._teachers]
                b.teacher_feats = self._t_taps.take()
            if self._signal is not None:
                self._signal(raw, b)
            else:
                b.teacher_logits = raw[0]
        return self.objective(b)

    def teachers_to(self, device: str) -> None:
        for t in self._teachers:
            t.to(device).eval()

    def remove_hooks(self) -> None:
        self._s_taps.remove()
        if self._t_taps is not None:
            self._t_taps.remove()

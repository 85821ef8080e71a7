"""What a strategy works with: the stage config, the data, the teachers, and helpers around the one training loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgekd.data import SplitData
from edgekd.distill import teacher_cache
from edgekd.distill.base import LOSSES
from edgekd.distill.objective import DistillModule, Objective
from edgekd.models import build_model
from edgekd.training.loop import TrainResult, fit, seed_everything


@dataclass
class DistillEnv:
    cfg: object  # edgekd.stages.distill.DistillConfig (not imported: the stage imports this module)
    ctx: object  # edgekd.core.stage.StageContext
    data: SplitData
    teachers: list[nn.Module]
    device: str

    @property
    def seed(self) -> int:
        return self.ctx.seed

    def new_student(self, spec: dict | None = None, seed_offset: int = 0) -> nn.Module:
        """A freshly initialised student (same seed -> same initial weights, so methods compare fairly)."""
        seed_everything(self.seed + seed_offset)
        return build_model(spec or self.cfg.student.as_dict(), self.data.input_shape[1], self.data.num_classes)

    def objective(self, with_teacher: bool = True) -> Objective:
        terms = [LOSSES.get(t.kind).term_cls(t) for t in self.cfg.losses] if with_teacher else []
        return Objective(self.cfg.temperature, self.cfg.alpha, self.cfg.train.label_smoothing, terms)

    def sample_input(self) -> torch.Tensor:
        from edgekd.data import normalize

        x = torch.from_numpy(self.data.arrays["train"][0][:2].copy())
        return normalize(x, self.data.mean, self.data.std)

    def module(self, student: nn.Module, teachers: list[nn.Module] | None = None, objective=None) -> DistillModule:
        """Wrap ``student`` with the configured objective and teachers (default: the stage's teachers)."""
        teachers = self.teachers if teachers is None else teachers
        obj = objective or self.objective(with_teacher=bool(teachers))
        return DistillModule(student, obj, teachers, self.teacher_signal(), self.sample_input())

    def teacher_signal(self):
        """How the teachers' logits become one teacher signal (multi-teacher weighting, then purification); None =
        the only teacher's logits unchanged."""
        from edgekd.distill.signal import TeacherSignal

        if not hasattr(self, "_signal"):  # one per stage: it counts what purification did during training
            weighting = getattr(self.cfg, "teacher_weighting", "fixed")
            purify = getattr(self.cfg, "purify", None)
            plain = len(self.teachers) <= 1 and weighting == "fixed" and purify is None
            weights = getattr(self.cfg, "teacher_weights", None)
            self._signal = None if plain else TeacherSignal(self.cfg.temperature, weighting, weights, purify)
        return self._signal

    def teacher_summary(self) -> dict:
        """What the teacher signal does on the un-augmented training split (purification counts, teacher weights),
        plus what purification did to the augmented batches trained on, for the student's metadata and the report;
        empty for a single, unpurified teacher."""
        signal = self.teacher_signal()
        if signal is None or not self.teachers:
            return {}
        x, y = self.data.arrays["train"]
        return signal.summary(self.teachers, x, y, self.data.mean, self.data.std, self.device)

    def fit(
        self,
        module: nn.Module,
        name: str,
        desc: str,
        loss_fn=None,
        data: SplitData | None = None,
        select_best: bool = True,
    ) -> TrainResult:
        """Train with the stage's recipe; ``data`` replaces the real splits (synthetic data), ``select_best=False``
        keeps the last epoch instead of the best one on the validation split."""
        if isinstance(module, DistillModule):
            module.teachers_to(self.device)
        loss_fn = loss_fn or module.loss
        # cached teachers (teacher_cache) replay their views; only on the real training split they were computed on
        views = teacher_cache.views_of(module) if data is None else None
        objective = module.objective if isinstance(module, DistillModule) else None
        parts = (lambda: objective._parts) if objective is not None and len(objective.terms) else None  # epoch lines
        return fit(module, data or self.data, self.cfg.train, self.ctx.pipeline.data.augment, self.seed, loss_fn, desc,
                   self.device, checkpoint=self.ctx.checkpoint(name), select_best=select_best, views=views,
                   loss_parts=parts)  # fmt: skip

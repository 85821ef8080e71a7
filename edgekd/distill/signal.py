"""The teacher signal: several teachers' logits combined into one (multi_teacher.py), then purified (purify.py).

``DistillModule`` calls a ``TeacherSignal`` with the raw logits of every teacher for a batch; it sets
``Batch.teacher_logits`` and, when purification weighs samples, ``Batch.sample_weight``, and counts what purification
did to the augmented batches trained on. ``summary`` also runs the same logic once over the un-augmented training
split, so the report can say how many samples were purified, and how, in both views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgekd.distill.base import Batch
from edgekd.distill.multi_teacher import Weighting, combine_teachers
from edgekd.distill.purify import PurifyConfig, purify


@dataclass
class TeacherSignal:
    temperature: float
    weighting: Weighting = "fixed"
    weights: list[float] | None = None
    purify: PurifyConfig | None = None
    # what purification did to the (augmented) batches trained on, summed over every call
    trained: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))

    def combine(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(raw) == 1 and self.weighting == "fixed":
            return raw[0], None  # one teacher: its own logits, bit for bit
        return combine_teachers(raw, self.temperature, self.weighting, self.weights)

    def __call__(self, raw: list[torch.Tensor], b: Batch) -> None:
        logits, _ = self.combine(raw)
        if self.purify is not None:
            logits, weight, f = purify(logits, b.y, self.purify, self.temperature)
            b.sample_weight = weight
            self._count(self.trained, f, weight, len(b.y))
        b.teacher_logits = logits

    @staticmethod
    def _count(into: dict, f: dict, weight: torch.Tensor | None, n: int) -> None:
        into["samples"] += n
        into["teacher_wrong"] += int(f["wrong"].sum())
        into["teacher_unconfident"] += int(f["unconfident"].sum())
        into["purified"] += int(f["flagged"].sum())
        into["weight_sum"] += float(weight.sum()) if weight is not None else float(n)

    @torch.no_grad()
    def summary(self, teachers: list[nn.Module], x: np.ndarray, y: np.ndarray, mean, std, device: str) -> dict:
        """Counts on the training split (no augmentation): what purification flags and what the teachers weigh."""
        from edgekd.data import normalize

        for t in teachers:
            t.eval()
        n = len(y)
        counts = dict.fromkeys(_COUNTS, 0)
        teacher_w = torch.zeros(len(teachers), dtype=torch.float64)
        for i in range(0, n, 256):
            xb = normalize(torch.from_numpy(np.array(x[i : i + 256])).to(device), mean, std)
            yb = torch.from_numpy(np.asarray(y[i : i + 256])).long().to(device)
            logits, w = self.combine([t(xb).float() for t in teachers])
            if w is not None:
                teacher_w += w.double().sum(1).cpu()
            if self.purify is not None:
                _, weight, f = purify(logits, yb, self.purify, self.temperature)
                self._count(counts, f, weight, len(yb))
        out: dict = {}
        if len(teachers) > 1 or self.weighting != "fixed":
            out["teacher_weighting"] = {
                "mode": self.weighting,
                "mean_weight_per_teacher": [round(float(v) / n, 4) for v in teacher_w],
            }
        if self.purify is not None:
            out["purification"] = {
                **self.purify.model_dump(mode="json"),
                "split": "train (no augmentation)",
                **_finish(counts),
            }
            if self.trained["samples"]:
                # every augmented view of every epoch run in this process (a resumed run counts from where it resumed)
                out["purification"]["during_training"] = _finish(self.trained)
        return out


_COUNTS = ("samples", "teacher_wrong", "teacher_unconfident", "purified", "weight_sum")


def _finish(c: dict) -> dict:
    out = {k: int(c[k]) for k in _COUNTS[:-1]}
    out["mean_sample_weight"] = round(c["weight_sum"] / max(c["samples"], 1), 4)
    return out


def describe_purification(p: dict) -> str:
    """One line for the report, e.g. 'dropped 12 of 1078 training samples (1.1 %) where the teacher was wrong'."""
    how = {"drop": "dropped", "downweight": "down-weighted", "correct": f"corrected ({p.get('correction')})"}
    when = {
        "wrong": "the teacher was wrong",
        "unconfident": f"the teacher's confidence was < {p.get('min_confidence')}",
        "wrong_or_unconfident": f"the teacher was wrong or its confidence < {p.get('min_confidence')}",
    }
    n, k = p.get("samples") or 0, p.get("purified", 0)
    pct = f" ({100 * k / n:.1f} %)" if n else ""
    text = (
        f"{how.get(p.get('mode'), p.get('mode'))} {k} of {n} training samples{pct} where "
        f"{when.get(p.get('when'), p.get('when'))} (teacher wrong on {p.get('teacher_wrong')}, "
        f"unconfident on {p.get('teacher_unconfident')}; mean sample weight {p.get('mean_sample_weight')})"
    )
    t = p.get("during_training")
    if t and t.get("samples"):
        text += (
            f"; during training {t['purified']} of {t['samples']} augmented sample views "
            f"({100 * t['purified'] / t['samples']:.2f} %; teacher wrong on {t['teacher_wrong']}, "
            f"unconfident on {t['teacher_unconfident']})"
        )
    return text

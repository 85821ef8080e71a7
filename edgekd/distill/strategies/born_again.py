"""born_again: self-distillation over generations (Furlanello et al. 2018, "Born-Again Neural Networks").

No external teacher. Generation 0 is the student architecture trained from scratch on the labels; generation k is
the same architecture, freshly initialised, taught by a frozen generation k - 1 with the stage's objective (the
Hinton base at ``temperature``/``alpha`` plus any ``losses`` terms, whose teacher layers are then the student's own
layer names). The last generation is the distilled student. Every generation starts from the same initial weights
as every other method's student (the stage seed), so generation 0 is exactly the scratch baseline and what a later
generation gains is the teacher signal alone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgekd.distill.base import LOSSES
from edgekd.distill.strategies.base import StrategyConfig, StrategyResult, register_strategy


class BornAgainConfig(StrategyConfig):
    kind: Literal["born_again"] = "born_again"
    generations: int = Field(
        2, ge=1, le=10, description="students taught in turn after generation 0 (the scratch-trained one)"
    )


def _check(scfg: BornAgainConfig, cfg, pipeline) -> list[str]:
    """Teacher-side layer names of the loss terms must exist in the student: the teacher is an earlier generation."""
    from edgekd.distill.taps import check_layers
    from edgekd.models import build_model

    names = list(dict.fromkeys(n for t in cfg.losses for n in LOSSES.get(t.kind).term_cls(t).teacher_layers()))
    if not names:
        return []
    channels, classes = pipeline.data.model_io()
    model = build_model(cfg.student.as_dict(), channels, classes)
    return check_layers(model, names, "the previous generation (the student's architecture)")


@register_strategy("born_again", BornAgainConfig, needs_teacher=False, check=_check)
def run_born_again(scfg: BornAgainConfig, env) -> StrategyResult:
    gen0 = env.new_student()
    module = env.module(gen0, teachers=[])  # no teacher: cross-entropy on the labels only
    res = env.fit(module, "gen0", "born-again gen 0 (scratch)")
    module.remove_hooks()
    generations = [{"generation": 0, "best_epoch": res.best_epoch, "val_accuracy": res.best_val_accuracy}]
    prev = gen0
    for g in range(1, scfg.generations + 1):
        prev.eval()
        for p in prev.parameters():
            p.requires_grad_(False)
        student = env.new_student()
        module = env.module(student, teachers=[prev])
        res = env.fit(module, f"gen{g}", f"born-again gen {g}")
        module.remove_hooks()
        generations.append({"generation": g, "best_epoch": res.best_epoch, "val_accuracy": res.best_val_accuracy})
        prev = student
    for p in prev.parameters():
        p.requires_grad_(True)
    return StrategyResult(prev, {"best_epoch": res.best_epoch, "history": res.history, "generations": generations})

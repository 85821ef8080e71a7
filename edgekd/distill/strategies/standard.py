"""standard: one or more fixed, pretrained teachers teach the student (Hinton KD plus any loss terms)."""

from __future__ import annotations

from typing import Literal

from edgekd.distill.strategies.base import StrategyConfig, StrategyResult, register_strategy


class StandardConfig(StrategyConfig):
    kind: Literal["standard"] = "standard"


@register_strategy("standard", StandardConfig)
def run_standard(_scfg: StandardConfig, env) -> StrategyResult:
    student = env.new_student()
    module = env.module(student)
    res = env.fit(module, "student", "distill")
    return StrategyResult(student, {"best_epoch": res.best_epoch, "history": res.history})

"""Strategies: how a distillation run is organised (which models exist, who teaches whom, on what data).

A strategy gets a ``DistillEnv`` (the stage's config, data, loaded teachers and helpers that build students,
objectives and call the one training loop) and returns the trained student. Adding a strategy = one file in this
package with ``@register_strategy`` and one import line in ``__init__.py``; the stage never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from edgekd.core.config import Strict
from edgekd.core.registry import Registry

if TYPE_CHECKING:
    from edgekd.distill.env import DistillEnv


class StrategyConfig(Strict):
    """Each strategy subclasses this with ``kind: Literal[...]`` and its own keys."""

    kind: str

    def extra_outputs(self, output: str) -> list[str]:
        """Artifact names of the extra models the strategy will save (``extra_models``), known before it runs."""
        return []


@dataclass
class StrategyResult:
    student: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)  # goes into the student artifact's metadata and the report
    # other trained models worth keeping (a cohort peer, an assistant): (artifact name, model, model spec)
    extra_models: list[tuple[str, nn.Module, dict]] = field(default_factory=list)


@dataclass(frozen=True)
class StrategySpec:
    config_cls: type[StrategyConfig]
    run: Callable[[Any, DistillEnv], StrategyResult]
    needs_teacher: bool = True
    # check(strategy_cfg, distill_cfg, pipeline) -> one-line errors, run by `edgekd validate` (e.g. data-free needs
    # a teacher with BatchNorm layers)
    check: Callable[[Any, Any, Any], list[str]] | None = None


STRATEGIES: Registry[StrategySpec] = Registry("distillation strategy")


def register_strategy(
    kind: str,
    config_cls: type[StrategyConfig],
    needs_teacher: bool = True,
    check: Callable[[Any, Any, Any], list[str]] | None = None,
):
    def deco(fn):
        STRATEGIES.register(kind)(StrategySpec(config_cls, fn, needs_teacher, check))
        return fn

    return deco

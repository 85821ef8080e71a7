"""Distillation strategies; importing this package fills the registry."""

from edgekd.distill.strategies import standard  # noqa: F401
from edgekd.distill.strategies.base import STRATEGIES, StrategyConfig, StrategyResult, register_strategy

__all__ = ["STRATEGIES", "StrategyConfig", "StrategyResult", "register_strategy"]

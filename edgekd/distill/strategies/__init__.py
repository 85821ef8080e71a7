"""Distillation strategies; importing this package fills the registry."""

from edgekd.distill.strategies import born_again, byot, data_free, online, standard  # noqa: F401
from edgekd.distill.strategies.base import STRATEGIES, StrategyConfig, StrategyResult, register_strategy

__all__ = ["STRATEGIES", "StrategyConfig", "StrategyResult", "register_strategy"]

"""Distillation methods: loss terms (combined as a weighted sum) and training strategies, each in a registry.

Importing this package fills both registries.
"""

from edgekd.distill import attention, features, heterogeneous, logits, relational, structural  # noqa: F401  (register loss terms)
from edgekd.distill.base import LOSSES, Batch, LossTerm, TermConfig, register_loss
from edgekd.distill.losses import hinton_loss, soft_target_loss
from edgekd.distill.strategies import STRATEGIES, StrategyConfig, StrategyResult, register_strategy

__all__ = [
    "LOSSES",
    "STRATEGIES",
    "Batch",
    "LossTerm",
    "StrategyConfig",
    "StrategyResult",
    "TermConfig",
    "hinton_loss",
    "register_loss",
    "register_strategy",
    "soft_target_loss",
]

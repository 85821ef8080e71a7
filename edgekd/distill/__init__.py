"""Distillation losses and methods."""

from edgekd.distill.losses import hinton_loss, soft_target_loss

__all__ = ["hinton_loss", "soft_target_loss"]

"""Models: the zoo, user models by import path, checkpoint loading and size counting."""

from edgekd.models.factory import build_model
from edgekd.models.registry import MODELS, import_object, register_model

__all__ = ["MODELS", "build_model", "import_object", "register_model"]

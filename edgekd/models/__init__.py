"""Models: the zoo, user models by import path, checkpoint loading and size counting."""

from edgekd.models import zoo  # noqa: F401  (registers the built-in models)
from edgekd.models.registry import MODELS, build_model, import_object, register_model

__all__ = ["MODELS", "build_model", "import_object", "register_model"]

"""Models: the zoo, user models by import path, checkpoint loading and size counting."""

from edgekd.models import vit, zoo  # noqa: F401  (register the built-in models)
from edgekd.models.registry import MODELS, build_model, import_object, register_model

__all__ = ["MODELS", "build_model", "import_object", "register_model"]

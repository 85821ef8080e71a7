"""Models by name from the libraries users train with: ``{timm: NAME}`` and ``{torchvision: NAME}``.

Each is built with the data's channels and classes (timm: ``in_chans``, ``num_classes``; torchvision:
``num_classes``, 3-channel images only) and never with downloaded weights: ``pretrained: FILE`` in the model spec
loads a local file afterwards (edgekd.models.checkpoint.load_pretrained), replacing the head when the class count
differs.

torchvision's compiled operators (``torchvision/_C.so``: nms, roi_align, deform_conv) must be built for the installed
torch. When they are not (PyPI's torchvision is a CUDA build; beside a CPU-only torch its ``_C.so`` cannot load and
``import torchvision`` fails with "operator torchvision::nms does not exist"), edgekd says so in one line. Setting
``EDGEKD_TORCHVISION_WITHOUT_OPS=1`` declares the two operators torchvision's import registers fake kernels for
(``nms``, ``qnms``), schema only, so its Python model code imports and runs: every classification model works, and
the detection operators raise "no kernel" if called. timm imports torchvision, so the same holds for timm.
"""

from __future__ import annotations

import difflib
import glob
import importlib.util
import os
import sys
from typing import Any

from torch import nn

from edgekd.core.errors import ModelError

WITHOUT_OPS = "EDGEKD_TORCHVISION_WITHOUT_OPS"
# The operators torchvision's import registers fake (meta) kernels for, unconditionally (torchvision 0.2x
# _meta_registrations.py); the rest of its registrations are skipped when its compiled ops did not load.
_IMPORT_TIME_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: list[Any] = []  # the torch.library.Library holding the schemas: it must outlive the import


def _compiled_ops_error() -> str | None:
    """Why torchvision's compiled operators cannot load beside this torch, or None when they can (or torchvision is
    absent, or already imported)."""
    if "torchvision" in sys.modules:
        return None
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = glob.glob(os.path.join(next(iter(spec.submodule_search_locations)), "_C*.so"))
    if not found:
        return None
    import torch

    try:
        torch.ops.load_library(found[0])
    except (OSError, RuntimeError) as exc:
        return str(exc).strip().splitlines()[0][:160]
    return None


def prepare_torchvision() -> None:
    """Make ``import torchvision`` (and so ``import timm``, and transformers' image code) safe to call: a no-op with a
    matched install; with a mismatched one, the schema-only workaround when ``EDGEKD_TORCHVISION_WITHOUT_OPS=1``,
    else one ModelError naming the mismatch and both ways out."""
    reason = _compiled_ops_error()
    if reason is None or _declared:
        return
    import torch

    from edgekd.core.versions import library_versions

    tv = library_versions(("torchvision",))["torchvision"]
    if os.environ.get(WITHOUT_OPS) != "1":
        raise ModelError(
            f"torchvision {tv} cannot load its compiled operators beside torch {torch.__version__} (builds do not "
            f"match: {reason}); install the torchvision built for this torch, or set {WITHOUT_OPS}=1 to use its "
            "model code without them (classification models work; detection operators such as nms do not)"
        )
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _IMPORT_TIME_OPS:
        lib.define(schema)
    _declared.append(lib)


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _import(name: str):
    """Import timm or torchvision, or one ModelError saying how to install it."""
    if importlib.util.find_spec(name) is None:
        raise ModelError(f"model spec '{name}:' needs {name}: pip install 'edgekd[timm]' (timm and torchvision)")
    prepare_torchvision()
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a broken install: one line, not its traceback
        raise ModelError(f"cannot import {name}: {type(exc).__name__}: {_first(exc)}") from None


def _unknown(library: str, name: str, known: list[str]) -> ModelError:
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return ModelError(f"{library} has no model '{name}'{hint}")


def build_timm(name: str, in_channels: int, num_classes: int, kwargs: dict) -> nn.Module:
    timm = _import("timm")
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())
    args = {"in_chans": in_channels, "num_classes": num_classes, **kwargs}
    try:
        return timm.create_model(name, pretrained=False, **args)
    except Exception as exc:
        raise ModelError(f"cannot build timm model '{name}' with {sorted(args)}: {_first(exc)}") from None


def build_torchvision(name: str, in_channels: int, num_classes: int, kwargs: dict) -> nn.Module:
    tv = _import("torchvision")
    known = tv.models.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known)
    if in_channels != 3:
        raise ModelError(
            f"torchvision model '{name}' takes 3-channel (RGB) images but the data has {in_channels} channel(s): "
            "set data.channels: 3, or use a timm model (in_chans adapts)"
        )
    try:
        return tv.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except Exception as exc:
        why = _first(exc)
        raise ModelError(f"cannot build torchvision model '{name}' with kwargs {sorted(kwargs)}: {why}") from None


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_normalization(spec: dict) -> tuple[list[float], list[float]] | None:
    """The mean and std the pretrained weights of ``spec`` were trained with (timm: the model's pretrained config;
    torchvision: ImageNet's), or None when the spec loads no pretrained file from those libraries."""
    if not spec.get("pretrained") or not (spec.get("timm") or spec.get("torchvision")):
        return None
    if spec.get("timm"):
        timm = _import("timm")
        cfg = timm.get_pretrained_cfg(spec["timm"].split(".")[0], allow_unregistered=True)
        mean, std = getattr(cfg, "mean", None) or IMAGENET_MEAN, getattr(cfg, "std", None) or IMAGENET_STD
        return [float(v) for v in mean], [float(v) for v in std]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)

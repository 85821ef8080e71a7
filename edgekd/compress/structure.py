"""Save and rebuild reshaped models (pruned channels, folded BatchNorm) without pickled code.

A pruned model is a smaller dense model of the same class, but its class builds the original widths. Pickling the
module would need ``torch.load(weights_only=False)`` — running code from a file. Instead the artifact keeps a plain
state_dict and ``meta["structure"]``: for every layer whose type or shape changed, the constructor arguments of its
replacement (JSON). ``edgekd.models.io.load_torch_model`` builds the model from its spec, swaps those layers in with
:func:`apply_structure` and loads the weights with ``weights_only=True``, so export, conversion and benchmark stages
treat a pruned or folded model like any other.

A layer of a library's own class (timm's BatchNormAct2d, a Conv2d subclass) is not rebuilt but reshaped in place: the
artifact keeps its class name, the plain attributes that changed (``num_features``) and the new shapes of its own
tensors (:func:`reshape_args`); the model built from the spec has the same layer, whose attributes and tensors are set
to those (:func:`_reshape`). Only attributes the layer already has, of the same plain type, are ever set.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from edgekd.core.errors import ModelError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.Hardsigmoid)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def layer_args(mod: nn.Module) -> dict[str, Any] | None:
    """Constructor arguments that rebuild ``mod`` (weights aside), or None for a layer type this module cannot save."""
    t = type(mod).__name__
    if type(mod) in _CONV:
        keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")
        return {"type": t, **{k: _plain(getattr(mod, k)) for k in keys}, "bias": mod.bias is not None}
    if type(mod) is nn.Linear:
        return {
            "type": t,
            "in_features": mod.in_features,
            "out_features": mod.out_features,
            "bias": mod.bias is not None,
        }
    if type(mod) in _BN:
        keys = ("num_features", "eps", "momentum", "affine", "track_running_stats")
        return {"type": t, **{k: getattr(mod, k) for k in keys}}
    if type(mod) is nn.LayerNorm:
        return {
            "type": t,
            "normalized_shape": list(mod.normalized_shape),
            "eps": mod.eps,
            "elementwise_affine": mod.elementwise_affine,
            "bias": getattr(mod, "bias", None) is not None,
        }
    if type(mod) is nn.GroupNorm:
        keys = ("num_groups", "num_channels", "eps", "affine")
        return {"type": t, **{k: getattr(mod, k) for k in keys}}
    if type(mod) is nn.PReLU:
        return {"type": t, "num_parameters": mod.num_parameters}
    if type(mod) is nn.Identity:
        return {"type": t}
    if type(mod) in _ACTS:  # an activation left where a folded BatchNormAct2d was (edgekd.compress.qat)
        args = {"type": t}
        for k in ("inplace", "approximate", "negative_slope"):
            if k in vars(mod):
                args[k] = getattr(mod, k)
        return args
    return None


RESHAPE = "reshape"
MAX_TENSOR_ELEMENTS = 1 << 31  # a saved shape beyond this is not a pruned layer


def _own_tensors(mod: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers held by ``mod`` itself (not its children)."""
    return {
        **{k: v for k, v in mod._parameters.items() if v is not None},
        **{k: v for k, v in mod._buffers.items() if v is not None},
    }


def _scalars(mod: nn.Module) -> dict[str, Any]:
    """The plain attributes of ``mod`` (numbers, booleans, tuples of ints): the sizes a reshape may change."""
    out = {}
    for k, v in vars(mod).items():
        if k.startswith("_") or k == "training" or isinstance(v, nn.Module):
            continue
        if isinstance(v, (bool, int, float)) or (isinstance(v, tuple) and all(isinstance(i, int) for i in v)):
            out[k] = _plain(v)
    return out


def reshape_args(mod: nn.Module, ref: nn.Module) -> dict[str, Any] | None:
    """How ``ref`` (the layer its spec builds) becomes ``mod`` in place: {} when nothing changed, None when the two
    differ beyond attributes and tensor shapes (another class, tensors added or removed)."""
    if type(mod) is not type(ref):
        return None
    mine, theirs = _own_tensors(mod), _own_tensors(ref)
    if set(mine) != set(theirs):
        return None
    tensors = {k: list(v.shape) for k, v in mine.items()}
    ref_scalars = _scalars(ref)
    attrs = {k: v for k, v in _scalars(mod).items() if k in ref_scalars and ref_scalars[k] != v}
    if not attrs and tensors == {k: list(v.shape) for k, v in theirs.items()}:
        return {}
    return {"type": RESHAPE, "class": type(mod).__name__, "attrs": attrs, "tensors": tensors}


def _reshape(mod: nn.Module, name: str, args: dict[str, Any]) -> None:
    if type(mod).__name__ != args.get("class"):
        raise ModelError(f"saved structure reshapes layer '{name}' as a {args.get('class')}, the spec builds a "
                         f"{type(mod).__name__}")  # fmt: skip
    current = _scalars(mod)
    for k, v in (args.get("attrs") or {}).items():
        if k not in current or type(v) is not type(current[k]):
            raise ModelError(f"saved structure sets '{k}' on layer '{name}', which it does not have as a {type(v)}")
        setattr(mod, k, tuple(v) if isinstance(v, list) else v)
    own = _own_tensors(mod)
    for k, shape in (args.get("tensors") or {}).items():
        ok = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
        if k not in own or not ok or math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise ModelError(f"saved structure gives layer '{name}' a tensor '{k}' of shape {shape}, which is invalid")
        old = own[k]
        new = torch.zeros(shape, dtype=old.dtype)
        if k in mod._parameters:
            mod._parameters[k] = nn.Parameter(new, requires_grad=old.requires_grad)
        else:
            mod._buffers[k] = new


def build_layer(args: dict[str, Any]) -> nn.Module:
    """The module described by :func:`layer_args` (fresh weights; the checkpoint fills them)."""
    kw = {k: (tuple(v) if isinstance(v, list) and k != "normalized_shape" else v) for k, v in args.items()}
    t = kw.pop("type", None)
    cls = {
        c.__name__: c for c in (*_CONV, *_BN, *_ACTS, nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.PReLU, nn.Identity)
    }.get(str(t))
    if cls is None:
        raise ModelError(f"saved structure names layer type {t!r}, which edgekd cannot rebuild")
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot rebuild a {t} layer from {args}: {exc}") from None


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        raise ModelError(f"saved structure names layer '{name}', which the model built from its spec lacks") from None
    if child not in parent._modules:
        raise ModelError(f"saved structure names layer '{name}', which the model built from its spec lacks")
    setattr(parent, child, new)


def describe(model: nn.Module, reference: nn.Module) -> dict[str, dict[str, Any]]:
    """Layers of ``model`` whose type or shape differ from ``reference`` (the model its spec builds).

    Raises ModelError when a change cannot be described (a layer type outside the supported set, or layers added
    or removed), so a model that could not be rebuilt is never written.
    """
    ref = dict(reference.named_modules())
    out: dict[str, dict[str, Any]] = {}
    for name, mod in model.named_modules():
        if not name:
            continue
        if name not in ref:
            raise ModelError(
                f"layer '{name}' is not in the model its spec builds; edgekd can swap layers, not add them"
            )
        mine, theirs = layer_args(mod), layer_args(ref[name])
        if mine is None:  # a class of a library's own: reshaped in place, when that describes the change
            change = reshape_args(mod, ref[name])
            if change is None:
                raise ModelError(
                    f"layer '{name}' ({type(mod).__name__}) changed but edgekd cannot save that layer type"
                )
            if change:
                out[name] = change
            continue
        if type(mod) is type(ref[name]) and mine == theirs:
            continue
        out[name] = mine
    return out


def apply_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> nn.Module:
    """Swap in the layers ``structure`` describes (outermost first), in place; returns ``model``."""
    for name in sorted(structure, key=lambda n: n.count(".")):
        if structure[name].get("type") == RESHAPE:
            try:
                mod = model.get_submodule(name)
            except AttributeError:
                raise ModelError(
                    f"saved structure names layer '{name}', which the model built from its spec lacks"
                ) from None
            _reshape(mod, name, structure[name])
        else:
            _set(model, name, build_layer(structure[name]))
    return model


def check_rebuild(model: nn.Module, reference: nn.Module, structure: dict[str, dict[str, Any]]) -> None:
    """Refuse to save ``model`` when ``reference`` + ``structure`` would not give back every weight's shape."""
    apply_structure(reference, structure)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    if want != got:
        bad = sorted(set(want) ^ set(got)) or [k for k in want if want[k] != got[k]]
        raise ModelError(
            f"the reshaped model cannot be rebuilt from its spec ({len(bad)} weights differ, e.g. {bad[0]}): a layer "
            "outside Conv/Linear/BatchNorm/LayerNorm/GroupNorm/PReLU changed shape; leave it alone (ignore_layers)"
        )

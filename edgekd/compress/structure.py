"""Save and rebuild reshaped models (pruned channels, folded BatchNorm) without pickled code.

A pruned model is a smaller dense model of the same class, but its class builds the original widths. Pickling the
module would need ``torch.load(weights_only=False)`` — running code from a file. Instead the artifact keeps a plain
state_dict and ``meta["structure"]``: for every layer whose type or shape changed, the constructor arguments of its
replacement (JSON). ``edgekd.models.io.load_torch_model`` builds the model from its spec, swaps those layers in with
:func:`apply_structure` and loads the weights with ``weights_only=True``, so export, conversion and benchmark stages
treat a pruned or folded model like any other.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from edgekd.core.errors import ModelError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


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
    return None


def build_layer(args: dict[str, Any]) -> nn.Module:
    """The module described by :func:`layer_args` (fresh weights; the checkpoint fills them)."""
    kw = {k: (tuple(v) if isinstance(v, list) and k != "normalized_shape" else v) for k, v in args.items()}
    t = kw.pop("type", None)
    cls = {c.__name__: c for c in (*_CONV, *_BN, nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.PReLU, nn.Identity)}.get(
        str(t)
    )
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
        if type(mod) is type(ref[name]) and (mine == theirs or mine is None):
            continue
        if mine is None:
            raise ModelError(f"layer '{name}' ({type(mod).__name__}) changed but edgekd cannot save that layer type")
        out[name] = mine
    return out


def apply_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> nn.Module:
    """Swap in the layers ``structure`` describes (outermost first), in place; returns ``model``."""
    for name in sorted(structure, key=lambda n: n.count(".")):
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

"""Safe checkpoint loading and saving: weights only, never pickled code."""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_write_bytes


def save_state_dict(model: nn.Module, path: Path) -> Path:
    # Through a buffer: torch.save names the archive after the file, and a temp file's random name would make two
    # identical models hash differently.
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint with ``weights_only=True``: a file holding code is refused, not run."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (UnpicklingError, KeyError, RuntimeError...) on bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"'{path}' is not a loadable weights-only checkpoint: {first[:200]}") from None
    # Accept the common wrappers: {"state_dict": ...} and {"model": ...}.
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"'{path}' does not hold a state_dict (a mapping of parameter names to tensors)")
    return obj


def non_finite_error(state: Mapping[str, torch.Tensor], path: str | Path, allow_inf: Collection[str] = ()) -> None:
    """Refuse the first floating tensor holding NaN, or +-Inf unless its name is in ``allow_inf`` (a buffer such as an
    attention mask or an observer's untouched min/max may be infinite; a weight never is)."""
    for name, t in state.items():
        if not (isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())):
            continue
        bad = torch.isnan(t).any() if name in allow_inf else ~torch.isfinite(t).all()
        if bool(bad):
            what = "NaN" if bool(torch.isnan(t).any()) else "Inf"
            raise ModelError(
                f"checkpoint '{path}' holds {what} in '{name}': its weights are broken (diverged training or a "
                "corrupt file); use another checkpoint"
            )


def load_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into ``model``, failing with one line when it was saved for another architecture."""
    state = load_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise ModelError(
            f"checkpoint '{path}' does not fit the {type(model).__name__} architecture: " + "; ".join(parts)
        )
    params = {name for name, _ in model.named_parameters()}
    non_finite_error(state, path, allow_inf=[k for k in state if k not in params])
    model.load_state_dict(state)
    return model

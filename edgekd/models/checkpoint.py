"""Safe checkpoint loading and saving: weights only, never pickled code."""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Mapping
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


# Containers a training script stores beside the weights (timm's train.py: ``args``, an argparse.Namespace; Lightning:
# its AttributeDict of hyper-parameters). They are read as inert records (_Record): never their real class, so no
# code of theirs runs. A global that is not a class (a function) or comes from a module that reaches the system is
# never read at all.
_NEVER = frozenset(
    [
        "builtins",
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "shutil",
        "importlib",
        "runpy",
        "pickle",
        "socket",
        "ctypes",
        "code",
        "pty",
        "webbrowser",
        "io",
        "tempfile",
        "pathlib",
        "functools",
        "operator",
        "types",
    ]
)
_WHOLE_MODEL = ("torch.nn.modules.", "torch.nn.parameter.", "torch.jit.", "torch._dynamo.", "torch.fx.")
WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net", "network", "weights")


class _Record:
    """Stand-in for a class a checkpoint names (an argparse.Namespace, a config object): keeps what the file holds
    (``args``, ``state``), runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state


class _Mapping:
    """Stand-in for a dict subclass a checkpoint names (Lightning's AttributeDict): read as a plain dict."""

    def __new__(cls, *args, **kwargs):
        return {}


def _readable_globals(path: Path) -> list[str]:
    """Stand-ins for the classes (not functions) a checkpoint names beyond torch's allow-list; a whole pickled model
    or a global that could reach the system is refused in one line."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint (legacy format, or not a checkpoint at all): torch.load will say
        return []
    if any(n.startswith(_WHOLE_MODEL) for n in names):
        raise ModelError(
            f"'{path}' holds a whole pickled model (torch.save(model)), which cannot be read without running its "
            "code: save the weights instead, torch.save(model.state_dict(), 'weights.pt'), and give that file"
        )
    refused = [
        n
        for n in names
        if (n.split(".")[0] in _NEVER and n != "argparse.Namespace") or not n.rpartition(".")[2][:1].isupper()
    ]
    if refused:
        raise ModelError(
            f"'{path}' is not a loadable weights-only checkpoint: it names {refused[0]}, which a weights file never "
            "needs (refused without reading it)"
        )
    return names


def read_checkpoint(path: str | Path, prefer_ema: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a checkpoint file and how they were found (``"state_dict of a timm train.py checkpoint"``).

    ``.safetensors`` through safetensors; everything else through ``torch.load(weights_only=True)`` (a plain
    state_dict, timm's ``.pth.tar`` with its ``args``, a Lightning ``.ckpt``): a file holding code is refused, never
    run. The weights are taken from the usual wrappers (``state_dict``, ``model``, ...; ``state_dict_ema`` when
    ``prefer_ema`` and present)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint '{path}' does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelError(f"reading '{path}' needs safetensors: pip install safetensors") from None
        try:
            return dict(load_file(str(path), device="cpu")), "safetensors"
        except Exception as exc:
            raise ModelError(f"'{path}' is not a readable safetensors file: {_first(exc)}") from None
    names = _readable_globals(path)
    for stand_in in (_Record, _Mapping):  # a container pickled as an object, else as a dict subclass
        try:
            with torch.serialization.safe_globals([(stand_in, n) for n in names]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
            break
        except Exception as exc:  # torch.load raises many types (UnpicklingError, KeyError, RuntimeError...)
            if names and stand_in is _Record and "SETITEM" in str(exc):
                continue
            raise ModelError(f"'{path}' is not a loadable weights-only checkpoint: {_first(exc)}") from None
    how = "state_dict"
    if isinstance(obj, dict) and not _is_state(obj):
        keys = (["state_dict_ema"] if prefer_ema else []) + list(WRAPPERS)
        found = next((k for k in keys if isinstance(obj.get(k), dict) and _is_state(obj[k])), None)
        if found is None:
            raise ModelError(
                f"'{path}' holds no state_dict: none of its keys ({', '.join(map(str, list(obj)[:8]))}) is a mapping "
                "of parameter names to tensors"
            )
        kind = "Lightning" if "pytorch-lightning_version" in obj or "lightning_version" in obj else (
            "timm train.py" if "arch" in obj or isinstance(obj.get("args"), _Record) else "training")  # fmt: skip
        how, obj = f"'{found}' of a {kind} checkpoint", obj[found]
    if not isinstance(obj, dict) or not _is_state(obj):
        raise ModelError(f"'{path}' does not hold a state_dict (a mapping of parameter names to tensors)")
    return dict(obj), how


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict a checkpoint file holds (see :func:`read_checkpoint`)."""
    return read_checkpoint(path)[0]


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _is_state(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def match_prefix(state: dict[str, torch.Tensor], own: Collection[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip the prefix a training wrapper added (DDP ``module.``, Lightning ``model.``, torch.compile
    ``_orig_mod.``, ...) so the names fit ``own``; keys outside the kept prefix are dropped. Returns the new state
    and what was done ("" when the names already fit)."""
    own = set(own)
    if set(state) >= own:
        return state, ""
    best, best_hits = "", len(own & set(state))
    prefixes = {k[: i + 1] for k in state for i, c in enumerate(k) if c == "." and k.count(".", 0, i) < 2}
    for prefix in sorted(prefixes):
        hits = sum(1 for k in state if k.startswith(prefix) and k[len(prefix) :] in own)
        if hits > best_hits:
            best, best_hits = prefix, hits
    if not best:
        return state, ""
    kept = {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}
    dropped = len(state) - len(kept)
    note = f"stripped '{best}' from {len(kept)} keys" + (f", ignored {dropped} keys outside it" if dropped else "")
    return kept, note


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


def load_into(
    model: nn.Module, path: str | Path, log: Callable[[str], None] | None = None, new_head: int | None = None
) -> nn.Module:
    """Load a checkpoint into ``model``, failing with one line when it was saved for another architecture; a wrapper's
    prefix (DDP, Lightning, torch.compile) is stripped and said through ``log``.

    ``new_head``: the model's class count, when the file may hold another head (pretrained weights: ImageNet's 1,000
    classes, a data set with 10). Then the tensors whose first dimension is the model's class count and whose shape
    differs from the file's, or that the file lacks, keep the model's fresh values, and ``log`` says so; any other
    difference still fails."""
    state, how = read_checkpoint(path)
    own = model.state_dict()
    state, stripped = match_prefix(state, own)
    if log is not None:
        log(f"checkpoint '{path}': {how}" + (f"; {stripped}" if stripped else ""))
    head: list[str] = []
    if new_head is not None:
        head = [
            k
            for k, v in own.items()
            if v.dim() >= 1 and v.shape[0] == new_head and (k not in state or tuple(state[k].shape) != tuple(v.shape))
        ]
        unexpected_head = [k for k in state if k not in own and state[k].dim() >= 1 and k.rsplit(".", 1)[0] in
                           {h.rsplit(".", 1)[0] for h in head}]  # fmt: skip
        saved = sorted({int(state[k].shape[0]) for k in head if k in state}) or ["no"]
        state = {k: v for k, v in state.items() if k not in head and k not in unexpected_head}
    missing = [k for k in own if k not in state and k not in head]
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
    model.load_state_dict(state, strict=not head)
    if head and log is not None:
        log(
            f"head replaced ({'/'.join(map(str, saved))} classes in the file, the data has {new_head}): "
            f"{', '.join(head)} start from the pipeline's seed"
        )
    return model

"""Channel pruning with torch-pruning's dependency graph: a pruned model is a smaller dense model.

Why torch-pruning (VainF): it traces which layers share a channel dimension (a depthwise conv and the convs around
it, both inputs of a residual add, a BatchNorm and its conv) and removes the same channels from all of them, so the
result is an ordinary dense model that every runtime runs faster — not a masked one. edgekd adds what a pipeline
needs around it: layer names from YAML with close-match errors, a check that every prunable layer was traced, a MACs
target reached in small steps, and a forward check after each step that names the layer that broke.

Unstructured (per-weight) magnitude pruning is offered too, for comparison: it zeroes weights but keeps every
tensor's shape, so dense runtimes (onnxruntime, LiteRT) run it exactly as fast as before.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.core.errors import ConfigError, ModelError
from edgekd.models.stats import count_macs, count_params

IMPORTANCE = ("l1", "l2", "taylor", "bn_scale")
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def resolve_layers(model: nn.Module, names: list[str], key: str = "ignore_layers") -> list[nn.Module]:
    """The modules named in YAML; an unknown name fails with the closest real names."""
    mods = dict(model.named_modules())
    out = []
    for name in names:
        if name not in mods or not name:
            close = difflib.get_close_matches(name, layer_names(model), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{key}: no layer {name!r} in {type(model).__name__}{hint}")
        out.append(mods[name])
    return out


def output_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """Name of the layer whose output is the model's output (the classifier): its outputs are the classes."""
    seen: dict[int, str] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(id(out), n))
        for n, m in model.named_modules()
        if n and isinstance(m, PRUNABLE)
    ]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return seen.get(id(out)) or (list(seen.values())[-1] if seen else None)


def _failing_layer(model: nn.Module, example: torch.Tensor) -> tuple[str | None, str | None]:
    """(layer, error) of a forward pass that raises: the innermost layer that was entered and not left."""
    stack: list[str] = []
    hooks = []
    for n, m in model.named_modules():
        if n:
            # (hooks must return None: a forward hook's return value replaces the layer's output)
            hooks.append(m.register_forward_pre_hook(lambda _m, _i, n=n: stack.append(n) and None))
            hooks.append(m.register_forward_hook(lambda _m, _i, _o: stack.pop() and None))
    try:
        with torch.no_grad():
            model.eval()(example)
        return None, None
    except Exception as exc:  # any error a broken forward raises
        return (stack[-1] if stack else None), (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    finally:
        for h in hooks:
            h.remove()


def check_forward(model: nn.Module, example: torch.Tensor, what: str) -> None:
    layer, err = _failing_layer(model, example)
    if err is not None:
        where = f" at layer '{layer}'" if layer else " after the last layer (in forward's own code)"
        raise ModelError(
            f"model: {what}, the model no longer runs{where}: {err}; its forward probably hard-codes a channel count "
            "— add the layer that feeds it to ignore_layers"
        )


def _importance(name: str):
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    raise ConfigError(f"importance: unknown criterion {name!r}; known: {', '.join(IMPORTANCE)}")


@dataclass
class PruneSettings:
    importance: str = "l2"
    ratio: float | None = None  # channel ratio per layer (uniform) or overall (global)
    macs_reduction: float | None = None  # fraction of MACs to remove
    global_pruning: bool = False
    max_layer_ratio: float = 0.75
    round_to: int | None = 8
    steps: int = 3


class ChannelPruner:
    """Wraps a torch-pruning MetaPruner; ``step(k)`` prunes to the k-th of ``steps`` targets (ratio or MACs)."""

    GRANULARITY = 100  # small internal steps towards a MACs target, so it is not overshot by much

    def __init__(self, model: nn.Module, example: torch.Tensor, settings: PruneSettings, ignore: list[str]):
        import torch_pruning as tp

        self.model, self.example, self.s = model, example, settings
        ignored = resolve_layers(model, ignore)
        head = output_layer(model, example)
        if head is not None:
            ignored.append(model.get_submodule(head))
        self.head = head
        self.base_macs = count_macs(model, tuple(example.shape))
        by_macs = settings.macs_reduction is not None
        try:
            self.pruner = tp.pruner.MetaPruner(
                model,
                example,
                importance=_importance(settings.importance),
                pruning_ratio=settings.max_layer_ratio if by_macs else float(settings.ratio or 0.0),
                iterative_steps=self.GRANULARITY if by_macs else settings.steps,
                global_pruning=settings.global_pruning,
                max_pruning_ratio=settings.max_layer_ratio,
                ignored_layers=ignored,
                round_to=settings.round_to,
            )
        except ConfigError:
            raise
        except Exception as exc:  # torch-pruning's tracer raises many types on forwards it cannot follow
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"model: torch-pruning cannot trace {type(model).__name__}: {first}") from None
        self._check_traced(ignored)

    def _check_traced(self, ignored: list[nn.Module]) -> None:
        """Every prunable layer must be in the traced graph; an untraced one would be silently left unpruned."""
        skip = {id(m) for layer in ignored for m in layer.modules()}
        traced = self.pruner.DG.module2node
        for name, mod in self.model.named_modules():
            if isinstance(mod, PRUNABLE) and id(mod) not in skip and mod not in traced:
                raise ModelError(
                    f"model: torch-pruning cannot trace layer '{name}' ({type(mod).__name__}): its output does not "
                    "reach the logits through autograd (detach(), numpy or no_grad in forward?); add it to "
                    "ignore_layers or make forward differentiable"
                )

    def macs(self) -> int:
        try:
            return count_macs(self.model, tuple(self.example.shape))
        except Exception:  # a step broke the forward: say where
            check_forward(self.model, self.example, "during pruning")
            raise

    def target_macs(self, k: int) -> int | None:
        if self.s.macs_reduction is None:
            return None
        return int(self.base_macs * (1.0 - self.s.macs_reduction * k / self.s.steps))

    def step(self, k: int, gradients: Callable[[], None] | None = None) -> dict:
        """Prune to the k-th target (1-based); ``gradients`` refills ``.grad`` for the Taylor criterion."""

        def one() -> None:
            if gradients is not None:
                self.model.zero_grad(set_to_none=True)
                gradients()
            self.pruner.step()
            self.model.zero_grad(set_to_none=True)

        target = self.target_macs(k)
        if target is None:
            one()
        else:
            while self.macs() > target:
                if self.pruner.current_step >= self.pruner.iterative_steps:
                    raise ModelError(
                        f"macs_reduction: cannot remove {self.s.macs_reduction:.0%} of the MACs: with "
                        f"max_layer_ratio {self.s.max_layer_ratio}, round_to {self.s.round_to} and the ignored "
                        f"layers the model stops at {1 - self.macs() / self.base_macs:.0%}"
                    )
                one()
        check_forward(self.model, self.example, f"after pruning step {k}")
        return {"step": k, "macs": self.macs(), "params": count_params(self.model)}


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels / features of every conv and linear layer (for the record and for tests)."""
    return {
        n: (m.out_channels if not isinstance(m, nn.Linear) else m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, PRUNABLE)
    }


# ------------------------------------------------------------------------------------------------ unstructured


def mask_unstructured(model: nn.Module, sparsity: float, ignore: list[str]) -> list[tuple[nn.Module, str]]:
    """Global L1 magnitude pruning of conv/linear weights to ``sparsity``; masks stay on during fine-tuning."""
    from torch.nn.utils import prune

    skip = {id(m) for layer in resolve_layers(model, ignore) for m in layer.modules()}
    params = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE) and id(m) not in skip]
    if not params:
        raise ModelError("model: no conv or linear layer left to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(sparsity))
    return params


def remove_masks(params: list[tuple[nn.Module, str]]) -> float:
    """Make the zeros permanent (plain weights again); returns the measured sparsity of those weights."""
    from torch.nn.utils import prune

    for mod, name in params:
        prune.remove(mod, name)
    total = sum(getattr(m, n).numel() for m, n in params)
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in params)
    return zeros / total

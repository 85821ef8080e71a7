"""Capture outputs of named layers with forward hooks, so methods read features without rewriting models."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from edgekd.core.errors import ConfigError


def layer_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def check_layers(model: nn.Module, names: list[str], role: str) -> list[str]:
    """One message per name that is not a submodule of ``model``, with the closest real names."""
    known = layer_names(model)
    errors = []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            more = " ..." if len(known) > 12 else ""
            errors.append(f"{role} has no layer '{name}'{hint} (its layers: {', '.join(known[:12])}{more})")
    return errors


class FeatureTaps:
    """Forward hooks on ``names``; after each forward, ``out[name]`` holds that layer's output of the latest call."""

    def __init__(self, model: nn.Module, names: list[str] | tuple[str, ...], role: str = "model"):
        errors = check_layers(model, list(names), role)
        if errors:
            raise ConfigError(errors[0])
        modules = dict(model.named_modules())
        self.out: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in dict.fromkeys(names)]

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self.out[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def take(self) -> dict[str, torch.Tensor]:
        out, self.out = self.out, {}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

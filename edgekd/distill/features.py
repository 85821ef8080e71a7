"""Feature distillation (FitNets hints, Romero et al. 2015) and the shape plumbing other feature terms share.

A student layer's output regresses a teacher layer's output. Layers are named in YAML and read with forward hooks.
Every feature is first put in one canonical form, a map (N, C, H, W):

* CNN feature maps are already maps;
* Transformer tokens (N, L, D) become (N, D, h, w) with h = w = sqrt(L) after dropping a leading class token when L
  is one more than a square: this is the **token <-> feature-map projection** that lets a ViT and a CNN compare;
* vectors (N, D) become (N, D, 1, 1).

Different resolutions are average-pooled to the smaller one (no parameters); different channel counts need a learned
1x1 convolution on the student side (the FitNets regressor; a linear layer per token/position), which is created
only when the channels differ and lives in the loss term, so it trains with the student and is never exported.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.core.config import Strict
from edgekd.core.errors import ConfigError
from edgekd.distill.base import Batch, LossTerm, TermConfig, register_loss, weighted_mean


class LayerPair(Strict):
    student: str = Field(description="student layer (module name)")
    teacher: str = Field(description="teacher layer (module name)")


def map_shape(shape: torch.Size | tuple[int, ...], where: str) -> tuple[int, int, int]:
    """(C, H, W) of a feature once made a map; ConfigError for shapes that are neither maps, tokens nor vectors."""
    shape = tuple(shape)
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 2:
        return shape[1], 1, 1
    if len(shape) == 3:
        side = _token_side(shape[1])
        if side is not None:
            return shape[2], side, side
        raise ConfigError(
            f"{where} outputs {shape[1]} tokens, which is neither a square number of patches nor one class token more"
        )
    raise ConfigError(f"{where} outputs a {len(shape)}-D tensor {shape}; feature terms take (N,C,H,W), (N,L,D), (N,D)")


def _token_side(length: int) -> int | None:
    for n in (length, length - 1):
        side = math.isqrt(max(n, 0))
        if n > 0 and side * side == n:
            return side
    return None


def to_map(x: torch.Tensor) -> torch.Tensor:
    """A feature as a map (N, C, H, W): tokens are laid back on their patch grid (class token dropped)."""
    if x.dim() == 4:
        return x
    if x.dim() == 2:
        return x[:, :, None, None]
    n, length, dim = x.shape
    side = _token_side(length)
    if side is None:
        raise ConfigError(f"cannot lay {length} tokens on a square grid")
    if side * side != length:
        x = x[:, 1:]
    return x.transpose(1, 2).reshape(n, dim, side, side)


def pool_to(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(hw) else F.adaptive_avg_pool2d(x, hw)


def common_hw(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int]:
    return min(a[1], b[1]), min(a[2], b[2])


def channel_adapter(cin: int, cout: int, adapter: bool, what: str) -> nn.Module:
    """Identity when the channels agree; a 1x1 convolution (a linear map per position or token) when they differ and
    adapters are on; else ConfigError."""
    if cin == cout:
        return nn.Identity()
    if not adapter:
        raise ConfigError(
            f"{what}: student has {cin} channels, teacher {cout}, and adapters are off; set 'adapter: true' or "
            "pick layers with equal channels"
        )
    return nn.Conv2d(cin, cout, 1, bias=False)


def shape_of(shapes: dict[str, torch.Size], name: str, role: str) -> torch.Size:
    if name not in shapes:
        raise ConfigError(f"{role} layer '{name}' produced no output in a forward pass (is it used by forward()?)")
    return shapes[name]


class FeatureConfig(TermConfig):
    kind: Literal["feature"] = "feature"
    pairs: list[LayerPair] = Field(min_length=1, description="student/teacher layers whose outputs are compared")
    adapter: bool = Field(True, description="learn a 1x1 conv on the student side where the channel counts differ")
    loss: Literal["mse", "l1"] = Field("mse", description="distance between the adapted student and the teacher")


class PairTerm(LossTerm):
    """A term over ``cfg.pairs`` of (student layer, teacher layer): both layer lists come from the pairs."""

    def student_layers(self) -> list[str]:
        return [p.student for p in self.cfg.pairs]

    def teacher_layers(self) -> list[str]:
        return [p.teacher for p in self.cfg.pairs]


@register_loss("feature", FeatureConfig)
class FeatureTerm(PairTerm):
    """FitNets hints: mean squared error between adapted student features and teacher features, averaged over pairs."""

    cfg: FeatureConfig

    def build(self, student_shapes, teacher_shapes) -> None:
        self.hw: list[tuple[int, int]] = []
        adapters = []
        for p in self.cfg.pairs:
            what = f"feature pair {p.student} -> {p.teacher}"
            s = map_shape(shape_of(student_shapes, p.student, "student"), f"student layer '{p.student}'")
            t = map_shape(shape_of(teacher_shapes, p.teacher, "teacher"), f"teacher layer '{p.teacher}'")
            adapters.append(channel_adapter(s[0], t[0], self.cfg.adapter, what))
            self.hw.append(common_hw(s, t))
        self.adapters = nn.ModuleList(adapters)

    def forward(self, b: Batch) -> torch.Tensor:
        per_sample = 0.0
        for p, adapter, hw in zip(self.cfg.pairs, self.adapters, self.hw, strict=True):
            s = adapter(pool_to(to_map(b.student_feats[p.student]), hw))
            t = pool_to(to_map(b.teacher_feats[p.teacher]), hw)
            diff = (s - t).abs() if self.cfg.loss == "l1" else (s - t).pow(2)
            per_sample = per_sample + diff.flatten(1).mean(1)
        return weighted_mean(per_sample / len(self.cfg.pairs), b.sample_weight)

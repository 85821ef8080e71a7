"""A small Vision Transformer for small images, built from ops every exporter and int8 kernel handles.

Why it looks the way it does:

* patch embedding by a strided convolution, and a **convolutional position encoding** (a depthwise 3x3 conv on the
  patch map, as CPVT's positional encoding generator does, Chu et al. 2021) instead of a learned table: the model
  works at any input size that the patch size divides (8x8 test digits, 32x32 pipelines) without a size argument,
  and adds the locality prior a ViT lacks on a data set of ~1,800 images;
* attention written out as matmul + softmax in 4-D tensors (no fused scaled_dot_product_attention, no 5-D
  transposes): ONNX (dynamo and TorchScript) and litert-torch (fp32, fp16, full int8) all take it;
* the attention probabilities come out of their own submodule (``blocks.<i>.attn.probs``), so distillation reads
  them with a forward hook, like any other layer, and the exported graph is the same as without hooks.

Layers for distillation: ``patch_embed`` (N, D, h, w), ``pos`` (the map after the position encoding),
``blocks.<i>`` (tokens, N x L x D), ``blocks.<i>.attn.probs`` (N, heads, L, L), ``norm``, ``head``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.models.registry import register_model


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ModelError(f"vit_tiny: dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.probs = nn.Softmax(dim=-1)  # hookable: its output is the attention map (N, heads, L, L)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        a = self.probs(torch.matmul(q * self.scale, k.transpose(-2, -1)))
        return self.proj(torch.matmul(a, v).transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm Transformer encoder block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PosConv(nn.Module):
    """x + depthwise 3x3 conv(x): a position encoding that needs no table and no input size."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class VisionTransformer(nn.Module):
    """ViT for small images; the default (dim 64, depth 4, 4 heads, patch 4) has ~0.14 M parameters.

    ``pool``: ``mean`` averages the patch tokens (no extra token); ``cls`` prepends a learned class token and
    classifies from it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        patch: int = 4,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        pool: Literal["mean", "cls"] = "mean",
    ):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ModelError(f"vit_tiny: pool must be 'mean' or 'cls', got {pool!r}")
        self.patch, self.pool_kind = patch, pool
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.pos = PosConv(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos(self.patch_embed(x))
        x = x.flatten(2).transpose(1, 2)  # (N, h*w, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x))
        x = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.head(x)


@register_model("vit_tiny")
def vit_tiny(**kw) -> nn.Module:
    return VisionTransformer(**kw)

"""Attention transfer (Zagoruyko & Komodakis 2017) and, for Transformers, attention-map transfer.

``maps: spatial`` (AT): a layer's activation-based spatial attention map is the channel mean of |F|^p, flattened
and L2-normalised; the loss is the mean squared difference between student and teacher maps, summed over the layer
pairs, as in the authors' code (which weights it by beta = 1000: set ``weight: 1000``). Channel counts may differ
(the map has one channel), so no adapter is needed; resolutions are pooled to the smaller one. Transformer blocks
work too: their tokens are laid on the patch grid first (see ``features.to_map``).

``maps: transformer``: the layers are attention-probability modules of Transformers (edgekd's ViT exposes them as
``blocks.<i>.attn.probs``, shape (N, heads, L, L)). Heads are averaged (so student and teacher may have different
head counts) and each row, a distribution over the L keys, is matched with KL(teacher || student), averaged over
rows: the attention-distribution transfer of MiniLM (Wang et al. 2020). Token counts must agree.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.core.errors import ConfigError
from edgekd.distill.base import Batch, TermConfig, register_loss, weighted_mean
from edgekd.distill.features import LayerPair, PairTerm, common_hw, map_shape, pool_to, shape_of, to_map


class AttentionConfig(TermConfig):
    kind: Literal["attention"] = "attention"
    pairs: list[LayerPair] = Field(
        min_length=1, description="student layer -> teacher layer whose attention maps are matched"
    )
    maps: Literal["spatial", "transformer"] = Field(
        "spatial", description="spatial: AT maps of features; transformer: attention probabilities of ViT layers"
    )
    p: float = Field(2.0, gt=0, le=8, description="exponent of |F| in the spatial attention map (AT uses 2)")


def spatial_attention(x: torch.Tensor, p: float, hw: tuple[int, int] | None = None) -> torch.Tensor:
    """AT map: channel mean of |x|^p on the (optionally pooled) grid, flattened and L2-normalised: (N, H*W)."""
    a = to_map(x).abs().pow(p).mean(1, keepdim=True)
    if hw is not None:
        a = pool_to(a, hw)
    return F.normalize(a.flatten(1), dim=1)


def head_mean(probs: torch.Tensor) -> torch.Tensor:
    """(N, heads, L, L) -> (N, L, L), each row still a distribution."""
    return probs.mean(1)


def _check_rows(probs: torch.Tensor, name: str) -> None:
    """Attention probabilities sum to 1 over keys; a square feature map of the same shape does not."""
    sums = probs.detach().sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ConfigError(
            f"attention (maps: transformer): layer '{name}' does not output attention probabilities (N, heads, L, L) "
            "(its rows do not sum to 1); for a ViT use 'blocks.<i>.attn.probs'"
        )


@register_loss("attention", AttentionConfig)
class AttentionTerm(PairTerm):
    cfg: AttentionConfig

    def build(self, student_shapes, teacher_shapes) -> None:
        self.hw: list[tuple[int, int]] = []
        for p in self.cfg.pairs:
            s_shape = shape_of(student_shapes, p.student, "student")
            t_shape = shape_of(teacher_shapes, p.teacher, "teacher")
            if self.cfg.maps == "spatial":
                s = map_shape(s_shape, f"student layer '{p.student}'")
                t = map_shape(t_shape, f"teacher layer '{p.teacher}'")
                self.hw.append(common_hw(s, t))
                continue
            for name, shape in ((p.student, s_shape), (p.teacher, t_shape)):
                if len(shape) != 4 or shape[-1] != shape[-2]:
                    raise ConfigError(
                        f"attention (maps: transformer): layer '{name}' outputs {tuple(shape)}, not attention "
                        "probabilities (N, heads, L, L); for a ViT use 'blocks.<i>.attn.probs'"
                    )
            if s_shape[-1] != t_shape[-1]:
                raise ConfigError(
                    f"attention pair {p.student} -> {p.teacher}: {s_shape[-1]} student tokens vs {t_shape[-1]} "
                    "teacher tokens; transformer attention maps need the same patching and pooling (class token)"
                )
            self.hw.append((0, 0))

    def forward(self, b: Batch) -> torch.Tensor:
        per_sample = 0.0
        for p, hw in zip(self.cfg.pairs, self.hw, strict=True):
            s, t = b.student_feats[p.student], b.teacher_feats[p.teacher]
            if self.cfg.maps == "spatial":
                diff = spatial_attention(s, self.cfg.p, hw) - spatial_attention(t, self.cfg.p, hw)
                per_sample = per_sample + diff.pow(2).mean(1)
            else:
                _check_rows(s, p.student)
                _check_rows(t, p.teacher)
                log_s = head_mean(s).clamp_min(1e-8).log()
                t_rows = head_mean(t)
                kl = (t_rows * (t_rows.clamp_min(1e-8).log() - log_s)).sum(-1)  # (N, L)
                per_sample = per_sample + kl.mean(1)
        return weighted_mean(per_sample, b.sample_weight)

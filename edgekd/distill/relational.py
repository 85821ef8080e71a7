"""Relational knowledge distillation (RKD, Park et al. 2019): transfer how samples relate, not what each one is.

The embeddings of a batch (a named layer's output, globally pooled or flattened; the logits when no layer is named)
give two relations, both invariant to the embedding's dimension, so student and teacher need no adapter:

* distance-wise: pairwise Euclidean distances, each divided by the mean non-zero distance of its batch;
* angle-wise: for every anchor i, the cosine of the angle between (e_j - e_i) and (e_k - e_i).

Each is matched with the Huber (smooth L1) loss over all pairs / triplets, exactly as the authors' code does
(including the zero diagonal); the paper's weights are 1 (distance) and 2 (angle). With purification's per-sample
weights, a pair counts w_i * w_j and a triplet w_i * w_j * w_k, so a dropped sample takes no part in any relation.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.distill.base import Batch, LossTerm, TermConfig, register_loss
from edgekd.distill.features import shape_of


class RKDConfig(TermConfig):
    kind: Literal["rkd"] = "rkd"
    student_layer: str | None = Field(None, description="student layer giving the embedding (default: the logits)")
    teacher_layer: str | None = Field(None, description="teacher layer giving the embedding (default: the logits)")
    pool: bool = Field(True, description="average maps over space / tokens over tokens (else flatten everything)")
    distance_weight: float = Field(1.0, ge=0, le=1e6, description="weight of the pairwise-distance term")
    angle_weight: float = Field(2.0, ge=0, le=1e6, description="weight of the triplet-angle term")


def embed(x: torch.Tensor, pool: bool) -> torch.Tensor:
    if pool and x.dim() == 4:
        return x.mean((2, 3))
    if pool and x.dim() == 3:
        return x.mean(1)
    return x.flatten(1)


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix with an exact zero diagonal (the sqrt of a clamped eps there would leak gradient)."""
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp_min(eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def _weighted(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1e-8)


def rkd_distance(s: torch.Tensor, t: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    ds, dt = pairwise_distances(s), pairwise_distances(t)
    ds = ds / ds[ds > 0].mean().clamp_min(1e-8) if (ds > 0).any() else ds
    dt = dt / dt[dt > 0].mean().clamp_min(1e-8) if (dt > 0).any() else dt
    pair_w = None if w is None else w[:, None] * w[None, :]
    return _weighted(F.smooth_l1_loss(ds, dt, reduction="none"), pair_w)


def angles(e: torch.Tensor, rel_tol: float = 1e-5) -> torch.Tensor:
    """(N, N, N): [i, j, k] = cos of the angle at anchor i between e_j and e_k.

    A pair with no direction -- the diagonal, or two (near-)identical embeddings, closer than ``rel_tol`` times the
    batch's largest value -- gets a zero vector, as ``F.normalize`` gives for an exact zero. It is masked *before*
    dividing: normalising a zero difference with eps 1e-12 passes a 1e12 factor into the gradient (norm ~3e9 for one
    duplicated sample in a batch of 8). Every other pair is divided by its norm as before, so the value is unchanged.
    """
    diff = e[None, :, :] - e[:, None, :]  # [i, j] = e_j - e_i
    norm = torch.linalg.vector_norm(diff, dim=2, keepdim=True)
    keep = norm > (e.detach().abs().amax() * rel_tol).clamp_min(1e-12)
    v = torch.where(keep, diff / torch.where(keep, norm, torch.ones_like(norm)), torch.zeros_like(diff))
    return torch.bmm(v, v.transpose(1, 2))


def rkd_angle(s: torch.Tensor, t: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    trip_w = None if w is None else w[:, None, None] * w[None, :, None] * w[None, None, :]
    return _weighted(F.smooth_l1_loss(angles(s), angles(t), reduction="none"), trip_w)


@register_loss("rkd", RKDConfig)
class RKDTerm(LossTerm):
    cfg: RKDConfig

    def student_layers(self) -> list[str]:
        return [self.cfg.student_layer] if self.cfg.student_layer else []

    def teacher_layers(self) -> list[str]:
        return [self.cfg.teacher_layer] if self.cfg.teacher_layer else []

    def build(self, student_shapes, teacher_shapes) -> None:
        if self.cfg.student_layer:
            shape_of(student_shapes, self.cfg.student_layer, "student")
        if self.cfg.teacher_layer:
            shape_of(teacher_shapes, self.cfg.teacher_layer, "teacher")

    def forward(self, b: Batch) -> torch.Tensor:
        s = b.student_feats[self.cfg.student_layer] if self.cfg.student_layer else b.student_logits
        t = b.teacher_feats[self.cfg.teacher_layer] if self.cfg.teacher_layer else b.teacher_logits
        s, t = embed(s, self.cfg.pool), embed(t, self.cfg.pool).detach()
        total = s.new_zeros(())
        if self.cfg.distance_weight:
            total = total + self.cfg.distance_weight * rkd_distance(s, t, b.sample_weight)
        if self.cfg.angle_weight:
            total = total + self.cfg.angle_weight * rkd_angle(s, t, b.sample_weight)
        return total

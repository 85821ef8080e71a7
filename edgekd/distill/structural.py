"""Structural distillation: the flow of solution procedure (FSP matrices, Yim et al. 2017).

The FSP matrix of two layers of one network is G = F1 F2^T / (h w) for F1 (C1 x h w) and F2 (C2 x h w): how the
features of the first layer turn into those of the second. The student learns to reproduce the teacher's matrices,
i.e. the teacher's way from one layer to the next rather than its features. The two layers of a pair may differ in
resolution: the larger one is average-pooled to the smaller (as torchdistill does, with max pooling). Student and
teacher matrices must have the same size; where the channel counts differ, ``adapter: true`` puts a learned 1x1
conv on each student feature (trained with the student, never exported). Loss: mean squared difference of the
matrices, summed over the pairs (the paper weights every pair equally).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from edgekd.core.config import Strict
from edgekd.distill.base import Batch, LossTerm, TermConfig, register_loss, weighted_mean
from edgekd.distill.features import channel_adapter, map_shape, pool_to, shape_of, to_map


class FSPPair(Strict):
    student: tuple[str, str] = Field(description="two student layers: [first, second]")
    teacher: tuple[str, str] = Field(description="the two matching teacher layers")


class FSPConfig(TermConfig):
    kind: Literal["fsp"] = "fsp"
    pairs: list[FSPPair] = Field(min_length=1, description="pairs of layers whose flow (FSP) matrices are matched")
    adapter: bool = Field(True, description="learn 1x1 convs on the student side where channel counts differ")


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, C1, C2) Gram matrix between two maps of the same resolution, divided by the number of positions."""
    hw = a.shape[2] * a.shape[3]
    return torch.bmm(a.flatten(2), b.flatten(2).transpose(1, 2)) / hw


def fsp_of(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = to_map(a), to_map(b)
    hw = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    return fsp_matrix(pool_to(a, hw), pool_to(b, hw))


@register_loss("fsp", FSPConfig)
class FSPTerm(LossTerm):
    cfg: FSPConfig

    def student_layers(self) -> list[str]:
        return [n for p in self.cfg.pairs for n in p.student]

    def teacher_layers(self) -> list[str]:
        return [n for p in self.cfg.pairs for n in p.teacher]

    def build(self, student_shapes, teacher_shapes) -> None:
        adapters = []
        for p in self.cfg.pairs:
            for k in range(2):
                s = map_shape(shape_of(student_shapes, p.student[k], "student"), f"student layer '{p.student[k]}'")
                t = map_shape(shape_of(teacher_shapes, p.teacher[k], "teacher"), f"teacher layer '{p.teacher[k]}'")
                what = f"fsp layers {p.student[k]} -> {p.teacher[k]}"
                adapters.append(channel_adapter(s[0], t[0], self.cfg.adapter, what))
        self.adapters = nn.ModuleList(adapters)

    def forward(self, b: Batch) -> torch.Tensor:
        per_sample = 0.0
        for i, p in enumerate(self.cfg.pairs):
            s1, s2 = (to_map(b.student_feats[n]) for n in p.student)
            hw = (min(s1.shape[2], s2.shape[2]), min(s1.shape[3], s2.shape[3]))
            g_s = fsp_matrix(self.adapters[2 * i](pool_to(s1, hw)), self.adapters[2 * i + 1](pool_to(s2, hw)))
            g_t = fsp_of(*(b.teacher_feats[n] for n in p.teacher))
            per_sample = per_sample + (g_s - g_t).pow(2).flatten(1).mean(1)
        return weighted_mean(per_sample, b.sample_weight)

"""RKD: distance- and angle-wise losses against a hand computation; weights; training; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from _shared import tiny_pipeline_doc
from term_helpers import TINY_STUDENT, assert_gradients, make_module, state_keys_unchanged, train_one_epoch

from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.distill.base import Batch
from edgekd.distill.relational import RKDConfig, RKDTerm, rkd_angle, rkd_distance


def huber(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def hand_distance(s: list[list[float]], t: list[list[float]]) -> float:
    n = len(s)

    def dists(e):
        d = [[math.dist(e[i], e[j]) for j in range(n)] for i in range(n)]
        nz = [v for row in d for v in row if v > 0]
        mean = sum(nz) / len(nz)
        return [[v / mean for v in row] for row in d]

    ds, dt = dists(s), dists(t)
    return sum(huber(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n**2


def hand_angle(s: list[list[float]], t: list[list[float]]) -> float:
    n = len(s)

    def cos(e, i, j, k):
        u = [a - b for a, b in zip(e[j], e[i], strict=True)]
        v = [a - b for a, b in zip(e[k], e[i], strict=True)]
        nu, nv = math.hypot(*u), math.hypot(*v)
        if nu == 0 or nv == 0:
            return 0.0
        return sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv)

    return sum(huber(cos(s, i, j, k), cos(t, i, j, k)) for i in range(n) for j in range(n) for k in range(n)) / n**3


def test_rkd_distance_and_angle_equal_hand_computation():
    s = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    t = [[0.0, 0.0, 1.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 2.0, 2.0]]  # other dimension: no adapter needed
    st, tt = torch.tensor(s), torch.tensor(t)
    assert float(rkd_distance(st, tt)) == pytest.approx(hand_distance(s, t), rel=1e-5)
    assert float(rkd_angle(st, tt)) == pytest.approx(hand_angle(s, t), rel=1e-5)
    term = RKDTerm(RKDConfig(distance_weight=1.0, angle_weight=2.0))  # on the logits by default
    b = Batch(x=torch.zeros(4), y=torch.zeros(4), student_logits=st, teacher_logits=tt)
    assert float(term(b)) == pytest.approx(hand_distance(s, t) + 2 * hand_angle(s, t), rel=1e-5)


def test_rkd_sample_weights_weigh_pairs_and_triplets():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 4)
    ones = torch.ones(5)
    assert float(rkd_distance(s, t, ones)) == pytest.approx(float(rkd_distance(s, t)), rel=1e-6)
    assert float(rkd_angle(s, t, ones)) == pytest.approx(float(rkd_angle(s, t)), rel=1e-6)
    w = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0])  # a dropped sample takes part in no angle
    keep = [0, 1, 2, 4]
    assert float(rkd_angle(s, t, w)) == pytest.approx(float(rkd_angle(s[keep], t[keep])), rel=1e-5)


def test_rkd_pools_maps_and_tokens():
    term = RKDTerm(RKDConfig(student_layer="a", teacher_layer="b", angle_weight=0.0))
    s_map, t_tok = torch.randn(3, 4, 2, 2), torch.randn(3, 5, 6)
    b = Batch(x=torch.zeros(3), y=torch.zeros(3), student_logits=torch.zeros(3, 2), student_feats={"a": s_map},
              teacher_feats={"b": t_tok})  # fmt: skip
    assert float(term(b)) == pytest.approx(float(rkd_distance(s_map.mean((2, 3)), t_tok.mean(1))), rel=1e-6)


def test_rkd_trains_student_not_teacher():
    module = make_module([{"kind": "rkd", "student_layer": "pool", "teacher_layer": "pool"}])
    assert_gradients(module)
    assert 0.0 <= train_one_epoch(module) <= 1.0
    assert module.objective.last_parts["0:rkd"] > 0
    state_keys_unchanged(module, TINY_STUDENT)


def test_rkd_unknown_layer_fails_validation_with_close_match():
    doc = tiny_pipeline_doc()
    doc["stages"][1]["losses"] = [{"kind": "rkd", "student_layer": "pol", "teacher_layer": "pool"}]
    with pytest.raises(ConfigError, match=r"student has no layer 'pol'; did you mean 'pool'"):
        validate_document(doc)


def _angle_before_the_fix(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The angle term as it was: F.normalize of every difference, zero ones included (eps 1e-12)."""
    import torch.nn.functional as F

    def angles(e):
        v = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
        return torch.bmm(v, v.transpose(1, 2))

    return F.smooth_l1_loss(angles(s), angles(t))


@pytest.mark.parametrize("offset", [0.0, 1e-7, 1e-6])
def test_rkd_angle_gradient_stays_bounded_with_duplicate_embeddings(offset):
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(8, 16, generator=gen)
    s = torch.randn(8, 16, generator=gen)
    s[1] = s[0] + offset * torch.randn(16, generator=gen)  # two samples the student maps (almost) to one point
    old = s.clone().requires_grad_(True)
    _angle_before_the_fix(old, t).backward()
    assert old.grad.norm() > 1e3  # what the issue measured: ~3e9 for an exact duplicate
    new = s.clone().requires_grad_(True)
    rkd_angle(new, t).backward()
    assert torch.isfinite(new.grad).all() and new.grad.norm() < 1e3, new.grad.norm()


def test_rkd_angle_value_unchanged_on_distinct_embeddings():
    gen = torch.Generator().manual_seed(1)
    for n, d in [(2, 3), (8, 16), (32, 64)]:
        s, t = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
        assert rkd_angle(s, t).item() == pytest.approx(_angle_before_the_fix(s, t).item(), rel=1e-6, abs=1e-9)

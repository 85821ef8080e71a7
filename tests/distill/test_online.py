"""Online distillation (Deep Mutual Learning): a cohort trained together, each member taught by the others."""

from __future__ import annotations

import math

import torch
from _shared import tiny_pipeline_doc
from strategy_helpers import STUDENT_SPEC, TEACHER_SPEC, assert_one_line_error, edgekd, fresh_keys, tiny_env

from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.distill import STRATEGIES
from edgekd.distill.strategies.online import Cohort, mutual_loss
from edgekd.models import build_model


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def _softmax(z: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def test_mutual_loss_equals_hand_computation():
    z = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]]  # three members, one sample, three classes
    y, t, a = 1, 2.0, 0.4
    expected = 0.0
    for k in range(3):
        ce = -math.log(_softmax(z[k], 1.0)[y])
        kls = [_kl(_softmax(z[j], t), _softmax(z[k], t)) for j in range(3) if j != k]
        expected += (1 - a) * ce + a * t * t * sum(kls) / 2
    logits = [torch.tensor([v]) for v in z]
    assert math.isclose(float(mutual_loss(logits, torch.tensor([y]), t, a)), expected, rel_tol=1e-5)


def test_each_member_is_taught_through_its_own_term_only():
    """The others' predictions are detached targets: d(total)/d(z_k) equals the gradient of member k's own loss."""
    z0 = torch.tensor([[1.0, -1.0, 0.5]], requires_grad=True)
    z1 = torch.tensor([[0.0, 2.0, -0.5]], requires_grad=True)
    y = torch.tensor([2])
    mutual_loss([z0, z1], y, 2.0, 0.5).backward()
    own = torch.tensor([[0.0, 2.0, -0.5]], requires_grad=True)
    mutual_loss([own, z0.detach()], y, 2.0, 0.5).backward()  # member 1's loss alone (z0 as a constant)
    assert torch.allclose(z1.grad, own.grad)


def test_gradients_reach_student_and_every_peer():
    torch.manual_seed(0)
    student, peer = build_model(STUDENT_SPEC, 1, 10), build_model(TEACHER_SPEC, 1, 10)
    cohort = Cohort(student, [peer], temperature=2.0, alpha=0.5, smoothing=0.0)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    cohort.loss(cohort(x), y, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters() if p.dim() > 1)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in peer.parameters() if p.dim() > 1)


def test_online_trains_a_mixed_cohort_and_returns_the_student(tmp_path):
    env = tiny_env(tmp_path, teachers=[], strategy={"kind": "online", "peers": [STUDENT_SPEC, TEACHER_SPEC]})
    res = STRATEGIES.get("online").run(env.cfg.strategy, env)
    assert set(res.student.state_dict()) == fresh_keys()
    assert not res.extra_models  # keep_peers is off
    assert len(res.meta["peer_val_accuracy"]) == 2
    # the peer with the student's architecture starts from other weights (else the cohort would be one model)
    start = env.new_student(STUDENT_SPEC, seed_offset=1).state_dict()
    assert any(not torch.equal(v, env.new_student().state_dict()[k]) for k, v in start.items())


def test_online_pipeline_keeps_peers_when_asked_and_a_later_stage_can_use_them(tmp_path):
    doc = tiny_pipeline_doc()
    distill = doc["stages"][1]
    distill.update(strategy={"kind": "online", "peers": [TEACHER_SPEC], "keep_peers": True}, baseline=False)
    # a peer is a torch artifact like any other: a later distill stage may take it as its teacher
    second = {**distill, "name": "from_peer", "output": "student2", "teachers": ["student_peer1"]}
    second["strategy"] = {"kind": "standard"}
    doc["stages"] = [distill, second]  # no teacher stage: online needs none
    res = run_pipeline(validate_document(doc), tmp_path / "run")
    assert "teacher" not in res.artifacts
    peer = res.artifacts["student_peer1"]
    assert peer.meta["model"]["name"] == "resnet_teacher" and peer.meta["role"] == "student_peer1"
    saved = torch.load(res.artifacts["student"].path, map_location="cpu", weights_only=True)
    assert set(saved) == fresh_keys()
    assert "student2" in res.artifacts


def test_online_with_feature_terms_is_a_one_line_error(write_pipeline, tiny_doc):
    tiny_doc["stages"][1]["strategy"] = {"kind": "online"}
    tiny_doc["stages"][1]["losses"] = [{"kind": "kd", "weight": 0.5}]
    assert_one_line_error(edgekd("validate", write_pipeline(tiny_doc)), r"strategy 'online' has no fixed teacher")

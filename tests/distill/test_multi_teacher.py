"""Multi-teacher: fixed and confidence weighting against a hand computation; training; bad input through the CLI."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from _shared import tiny_pipeline_doc
from term_helpers import (
    TINY_STUDENT,
    TINY_TEACHER,
    TINY_VIT,
    assert_gradients,
    assert_one_line_error,
    edgekd_cli,
    frozen,
    make_module,
    sample_batch,
    state_keys_unchanged,
    tiny_data,
    train_one_epoch,
)

from edgekd.distill.base import Batch
from edgekd.distill.env import DistillEnv
from edgekd.distill.losses import soft_target_loss
from edgekd.distill.multi_teacher import combine_teachers, teacher_weights
from edgekd.distill.signal import TeacherSignal
from edgekd.stages.distill import DistillConfig

Z1 = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
Z2 = torch.tensor([[0.0, 3.0, 0.0], [0.5, 0.5, 4.0]])


def _softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_fixed_weights_average_the_softened_distributions():
    T, w = 2.0, [3.0, 1.0]
    logits, used = combine_teachers([Z1, Z2], T, "fixed", w)
    for n in range(2):
        p1, p2 = _softmax(Z1[n].tolist(), T), _softmax(Z2[n].tolist(), T)
        want = [0.75 * a + 0.25 * b for a, b in zip(p1, p2, strict=True)]
        # softmax(combined / T) is the weighted average exactly, so the Hinton base term needs no change
        assert F.softmax(logits[n] / T, 0).tolist() == pytest.approx(want, rel=1e-5)
    assert used[:, 0].tolist() == pytest.approx([0.75, 0.25])


def test_confidence_weights_follow_each_teachers_top_probability():
    w = teacher_weights([Z1, Z2], "confidence", [1.0, 1.0])
    for n in range(2):
        c1, c2 = max(_softmax(Z1[n].tolist(), 1.0)), max(_softmax(Z2[n].tolist(), 1.0))
        assert w[:, n].tolist() == pytest.approx([c1 / (c1 + c2), c2 / (c1 + c2)], rel=1e-5)
    # the base KD term with the combined signal is KL to the confidence-weighted average
    T = 4.0
    logits, _ = combine_teachers([Z1, Z2], T, "confidence")
    s = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]])
    want = 0.0
    for n in range(2):
        p = [float(w[0, n]) * a + float(w[1, n]) * b for a, b in
             zip(_softmax(Z1[n].tolist(), T), _softmax(Z2[n].tolist(), T), strict=True)]  # fmt: skip
        q = _softmax(s[n].tolist(), T)
        want += sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert float(soft_target_loss(s, logits, T)) == pytest.approx(want / 2 * T * T, rel=1e-5)


def test_one_teacher_signal_is_the_teacher_itself():
    b = Batch(x=torch.zeros(2), y=torch.tensor([0, 1]), student_logits=torch.zeros(2, 3))
    TeacherSignal(2.0)([Z1], b)
    assert b.teacher_logits is Z1 and b.sample_weight is None
    cfg = DistillConfig(stage="distill")
    assert DistillEnv(cfg, None, tiny_data(), [frozen(TINY_TEACHER)], "cpu").teacher_signal() is None
    two = DistillConfig(stage="distill", teachers=["teacher", "t2"], teacher_weighting="confidence")
    assert isinstance(
        DistillEnv(two, None, tiny_data(), [frozen(TINY_TEACHER)] * 2, "cpu").teacher_signal(), TeacherSignal
    )


def test_two_teachers_of_different_families_train_the_student():
    teachers = [frozen(TINY_TEACHER), frozen(TINY_VIT, seed=2)]
    module = make_module([], teachers=teachers, signal=TeacherSignal(2.0, "confidence", [1.0, 2.0]))
    assert_gradients(module)
    x, y = sample_batch(8)
    module.loss(module(x), y, x)
    assert train_one_epoch(module) >= 0.0
    state_keys_unchanged(module, TINY_STUDENT)
    data = tiny_data()
    x, y = data.arrays["train"]
    summary = TeacherSignal(2.0, "confidence", [1.0, 2.0]).summary(teachers, x, y, data.mean, data.std, "cpu")
    weights = summary["teacher_weighting"]["mean_weight_per_teacher"]
    assert len(weights) == 2 and sum(weights) == pytest.approx(1.0, abs=1e-3)


def _write(tmp_path, distill_keys: dict, extra_teacher: bool = True):
    doc = tiny_pipeline_doc()
    if extra_teacher:
        t2 = {**doc["stages"][0], "name": "teacher2", "output": "teacher2", "model": TINY_VIT}
        doc["stages"].insert(1, t2)
    doc["stages"][-5].update(distill_keys)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("keys", "pattern"),
    [
        ({"teachers": []}, r"needs at least one teacher in 'teachers'"),
        ({"teachers": ["teacher", "teacher2"], "teacher_weights": [1.0]}, r"teacher_weights has 1 values for 2"),
    ],
)
def test_bad_teacher_lists_are_one_line_at_validate_time(tmp_path, keys, pattern):
    assert_one_line_error(edgekd_cli("validate", _write(tmp_path, keys)), pattern)

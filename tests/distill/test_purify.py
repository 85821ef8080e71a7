"""Knowledge purification: drop, down-weight and correct against hand computations; counts; report line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from term_helpers import (
    TINY_STUDENT,
    TINY_TEACHER,
    assert_gradients,
    frozen,
    make_module,
    state_keys_unchanged,
    tiny_data,
    train_one_epoch,
)

from edgekd.core.artifacts import Benchmark, TorchModel
from edgekd.distill.base import Batch
from edgekd.distill.describe import method_line, method_summary
from edgekd.distill.losses import hinton_loss, soft_target_loss
from edgekd.distill.purify import PurifyConfig, purify
from edgekd.distill.signal import TeacherSignal
from edgekd.stages import report as report_stage

# sample 0: right and sure; 1: wrong (top class 0, label 2); 2: right but unsure (top prob ~0.4)
Z = torch.tensor([[4.0, 0.0, 0.0], [3.0, 0.0, 1.0], [0.3, 0.0, 0.0]])
Y = torch.tensor([0, 2, 0])


def test_flags_and_drop():
    logits, w, f = purify(Z, Y, PurifyConfig(mode="drop", when="wrong"), 2.0)
    assert f["wrong"].tolist() == [False, True, False]
    assert f["unconfident"].tolist() == [False, False, True]
    assert w.tolist() == [1.0, 0.0, 1.0] and logits is Z
    _, w, _ = purify(Z, Y, PurifyConfig(mode="drop", when="wrong_or_unconfident", min_confidence=0.5), 2.0)
    assert w.tolist() == [1.0, 0.0, 0.0]
    # a dropped sample leaves the soft-target term; the hard-label term keeps every sample
    s = torch.randn(3, 3)
    got = hinton_loss(s, Z, Y, 2.0, 0.5, weight=w)
    want = 0.5 * soft_target_loss(s[:1], Z[:1], 2.0) + 0.5 * F.cross_entropy(s, Y)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_downweight_uses_the_teachers_probability_of_the_label():
    _, w, _ = purify(Z, Y, PurifyConfig(mode="downweight", when="wrong"), 2.0)
    p_true = F.softmax(Z[1], 0)[2]
    assert w.tolist() == pytest.approx([1.0, float(p_true), 1.0])


def test_correct_by_swap_makes_the_teacher_right_and_keeps_its_shape():
    logits, w, _ = purify(Z, Y, PurifyConfig(mode="correct", when="wrong"), 2.0)
    assert w is None
    assert logits[1].tolist() == [1.0, 0.0, 3.0]  # the logits of class 0 (top) and 2 (label) traded places
    assert logits[0].equal(Z[0]) and logits[2].equal(Z[2])


def test_correct_by_mix_moves_the_soft_targets_toward_the_label():
    T, m = 2.0, 0.25
    logits, _, _ = purify(Z, Y, PurifyConfig(mode="correct", when="wrong", correction="mix", mix=m), T)
    want = (1 - m) * F.softmax(Z[1] / T, 0) + m * torch.tensor([0.0, 0.0, 1.0])
    assert F.softmax(logits[1] / T, 0).tolist() == pytest.approx(want.tolist(), rel=1e-5)


def test_signal_sets_sample_weight_and_counts_the_training_split():
    b = Batch(x=torch.zeros(3), y=Y, student_logits=torch.zeros(3, 3))
    TeacherSignal(2.0, purify=PurifyConfig(mode="drop"))([Z], b)
    assert b.sample_weight.tolist() == [1.0, 0.0, 1.0]
    teacher = frozen(TINY_TEACHER)  # untrained: wrong on most samples
    data = tiny_data()
    x, y = data.arrays["train"]
    cfg = PurifyConfig(mode="drop", when="wrong_or_unconfident", min_confidence=0.5)
    summary = TeacherSignal(2.0, purify=cfg).summary([teacher], x, y, data.mean, data.std, "cpu")["purification"]
    from edgekd.training.loop import predict_logits

    logits = predict_logits(teacher, x, data.mean, data.std)
    wrong = int((logits.argmax(1) != torch.from_numpy(y)).sum())
    unsure = int((F.softmax(logits, 1).amax(1) < 0.5).sum())
    assert summary["samples"] == len(y) and summary["teacher_wrong"] == wrong
    assert summary["teacher_unconfident"] == unsure and max(wrong, unsure) <= summary["purified"]
    assert summary["mean_sample_weight"] == pytest.approx(1 - summary["purified"] / len(y), abs=1e-3)


@pytest.mark.parametrize("mode", ["drop", "downweight", "correct"])
def test_purified_distillation_trains(mode):
    signal = TeacherSignal(2.0, purify=PurifyConfig(mode=mode, when="wrong_or_unconfident"))
    module = make_module([{"kind": "kd", "temperature": 4.0}], signal=signal)
    assert_gradients(module)
    signal.trained = dict.fromkeys(signal.trained, 0)
    assert train_one_epoch(module) >= 0.0
    state_keys_unchanged(module, TINY_STUDENT)
    data = tiny_data()
    x, y = data.arrays["train"]
    during = signal.summary(module._teachers, x, y, data.mean, data.std, "cpu")["purification"]["during_training"]
    assert during["samples"] == len(y)  # one epoch: every training image once, augmented
    assert 0 < during["purified"] <= len(y)  # an untrained teacher is wrong on most of them


def test_report_reads_the_counts_from_the_student(tmp_path):
    meta = {
        "method": {"strategy": {"kind": "standard"}, "losses": [], "purify": {"mode": "drop"}},
        "teachers": ["teacher"],
        "temperature": 2.0,
        "alpha": 0.5,
        "purification": {"mode": "drop", "when": "wrong", "min_confidence": 0.5, "samples": 1078, "purified": 12,
                         "teacher_wrong": 12, "teacher_unconfident": 3, "mean_sample_weight": 0.9889,
                         "during_training": {"samples": 23380, "purified": 245, "teacher_wrong": 200,
                                             "teacher_unconfident": 90, "mean_sample_weight": 0.99}},
    }  # fmt: skip
    line = method_line(method_summary("student", meta))
    assert "student: standard distillation from teacher (T=2, alpha=0.5)" in line
    assert "purification: dropped 12 of 1078 training samples (1.1 %) where the teacher was wrong" in line
    assert "during training 245 of 23380 augmented sample views (1.05 %" in line
    (tmp_path / "m.pt").write_bytes(b"x")
    store = {
        "benchmark": Benchmark("benchmark", tmp_path / "m.pt", {}),
        "student": TorchModel("student", tmp_path / "m.pt", meta),
        "baseline": TorchModel("baseline", tmp_path / "m.pt", {}),
    }
    assert report_stage._inputs(report_stage.ReportConfig(stage="report"), store) == ["benchmark", "student"]


def test_purification_after_combination_judges_the_combined_target_at_t1():
    """Documented in purify.py: several teachers are purified as one, on softmax at T = 1 of T * log p_mix."""
    from edgekd.distill.purify import flags

    za, zb = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    temp = 2.0
    b = Batch(torch.zeros(1, 3), torch.tensor([0]), torch.zeros(1, 3))
    TeacherSignal(temperature=temp)([za, zb], b)
    p_mix = 0.5 * F.softmax(za / temp, 1) + 0.5 * F.softmax(zb / temp, 1)
    seen = F.softmax(b.teacher_logits, 1)
    assert torch.allclose(seen, p_mix**temp / (p_mix**temp).sum(1, keepdim=True))
    # 0.48 (p_mix at T) and 0.56 (the teachers' T = 1 average) would flag it; the combined target at T = 1 is 0.63
    ensemble_t1 = 0.5 * F.softmax(za, 1) + 0.5 * F.softmax(zb, 1)
    assert float(p_mix.max()) < float(ensemble_t1.max()) < 0.6 < float(seen.max())
    assert not bool(flags(b.teacher_logits, b.y, PurifyConfig(when="unconfident", min_confidence=0.6))["flagged"][0])

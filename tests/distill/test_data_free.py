"""Data-free distillation (DeepInversion): synthesis from the teacher's BatchNorm statistics, then distillation on
the synthetic images only — the real train and validation splits are never read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _shared import tiny_pipeline_doc
from strategy_helpers import ROOT, assert_one_line_error, edgekd, fresh_keys, tiny_data, tiny_env, tiny_teacher
from torch import nn

from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.data import SplitData
from edgekd.distill import STRATEGIES
from edgekd.distill.strategies.data_free import BNStatistics, DataFreeConfig, synthesize_batch, total_variation

FAST = {"kind": "data_free", "images": 40, "batch_size": 20, "iterations": 3}


def test_bn_statistics_loss_equals_hand_computation():
    conv, bn1, bn2 = nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.BatchNorm2d(2)
    net = nn.Sequential(conv, bn1, bn2).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        bn1.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn1.running_var.copy_(torch.tensor([2.0, 1.0]))
        bn2.running_mean.copy_(torch.tensor([0.0, 0.0]))
        bn2.running_var.copy_(torch.tensor([1.0, 1.0]))
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # 2 images of 2x2, one channel
    stats = BNStatistics(net, first_weight=10.0)
    net(x)
    # bn1 sees channel 0 = x, channel 1 = -2x: mean 1.25 and -2.5, biased variance 0.6875 and 2.75
    mean1, var1 = np.array([1.25, -2.5]), np.array([0.6875, 2.75])
    first = np.linalg.norm(mean1 - [0.5, -1.0]) + np.linalg.norm(var1 - [2.0, 1.0])
    # bn2 sees bn1's output (eval: normalised with the running statistics, gamma 1, beta 0)
    y0 = (x.flatten().numpy() - 0.5) / np.sqrt(2.0 + 1e-5)
    y1 = (-2 * x.flatten().numpy() + 1.0) / np.sqrt(1.0 + 1e-5)
    second = np.linalg.norm([y0.mean(), y1.mean()]) + np.linalg.norm([y0.var() - 1, y1.var() - 1])
    assert float(stats.loss()) == pytest.approx(10.0 * first + second, rel=1e-5)
    stats.remove()
    assert float(stats.loss()) == 0.0  # hooks removed: nothing recorded


def test_total_variation_equals_hand_computation():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])
    # horizontal (1, 2), vertical (3, 4), diagonal (5), anti-diagonal (1 - 3 = -2): mean squares 2.5 + 12.5 + 25 + 4
    assert float(total_variation(x)) == pytest.approx(44.0)


def test_synthesis_moves_the_pixels_and_never_the_teacher():
    teacher = tiny_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    scfg = DataFreeConfig(**{**FAST, "iterations": 15})
    lo, hi = torch.full((1, 1, 1), -1.0), torch.full((1, 1, 1), 2.5)
    targets = torch.arange(20) % 10
    gen = torch.Generator().manual_seed(0)
    x0 = torch.max(torch.min(torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)), hi), lo)
    x, parts = synthesize_batch(teacher, targets, (1, 8, 8), lo, hi, scfg, gen)
    assert not torch.equal(x, x0) and x.min() >= -1.0 and x.max() <= 2.5
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # running stats too
    # the pixels do receive gradients, and the objective goes down from the starting noise
    xs = x0.clone().requires_grad_(True)
    stats = BNStatistics(teacher, scfg.first_bn_weight)
    ce = torch.nn.functional.cross_entropy(teacher(xs), targets)
    start = ce + scfg.bn_weight * stats.loss() + scfg.tv_weight * total_variation(xs)
    start.backward()
    stats.remove()
    assert xs.grad is not None and xs.grad.abs().sum() > 0
    assert parts["loss"] < float(start)


class _Untouchable:
    """Stands in for a real split: its shape may be read, its contents never."""

    def __init__(self, shape):
        self.shape = shape

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, _):
        raise AssertionError("the data-free strategy read a real split")

    def __array__(self, *a, **k):
        raise AssertionError("the data-free strategy read a real split")


def test_data_free_never_reads_real_train_or_val_and_keeps_the_last_epoch(tmp_path):
    real = tiny_data()
    hidden = {s: (_Untouchable(x.shape), _Untouchable(y.shape)) for s, (x, y) in real.arrays.items()}
    data = SplitData(hidden, real.labels, real.mean, real.std)
    env = tiny_env(tmp_path, data=data, strategy=FAST, train={"epochs": 2, "batch_size": 16})
    res = STRATEGIES.get("data_free").run(env.cfg.strategy, env)
    assert set(res.student.state_dict()) == fresh_keys()
    assert res.meta["selection"] == "last epoch" and res.meta["best_epoch"] == 2
    syn = res.meta["synthesis"]
    assert syn["images"] == 40 and sum(syn["class_counts"]) == 40
    assert (tmp_path / "synthetic_preview.png").stat().st_size > 0


def test_data_free_pipeline_saves_only_the_student(tmp_path):
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    doc["stages"][1].update(strategy=FAST, baseline=False)
    res = run_pipeline(validate_document(doc), tmp_path / "run")
    saved = torch.load(res.artifacts["student"].path, map_location="cpu", weights_only=True)
    assert set(saved) == fresh_keys()
    assert res.artifacts["student"].meta["synthesis"]["images"] == 40


def test_teacher_without_batchnorm_is_a_one_line_error_at_validate(write_pipeline, tiny_doc):
    import os

    tiny_doc["stages"][0]["model"] = {"import": "strategy_helpers:NoBatchNormNet"}
    tiny_doc["stages"][1]["strategy"] = {"kind": "data_free"}
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'tests' / 'distill'}"}
    assert_one_line_error(
        edgekd("validate", write_pipeline(tiny_doc), env=env),
        r"stages\[1\] \(distill\): strategy 'data_free' \(DeepInversion\) needs BatchNorm layers in teacher 'teacher'",
    )


@pytest.mark.parametrize(
    ("keys", "pattern"),
    [
        ({"teachers": ["teacher", "teacher2"]}, r"inverts one teacher: give exactly one in 'teachers' \(got 2\)"),
        ({"purify": {"mode": "drop"}}, r"never reads the real training split, which purify would"),
        ({"teacher_cache": {"enabled": True}}, r"never reads the real training split, which teacher_cache would"),
    ],
)
def test_options_that_need_real_data_or_several_teachers_are_refused(keys, pattern):
    from edgekd.core.errors import ConfigError

    doc = tiny_pipeline_doc()
    doc["stages"].insert(1, {**doc["stages"][0], "name": "teacher2", "output": "teacher2"})
    doc["stages"][2].update(strategy=FAST, **keys)
    with pytest.raises(ConfigError, match=pattern):
        validate_document(doc)

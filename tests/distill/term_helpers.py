"""Tiny models, tiny data and checks shared by the loss-term tests (a plain module, not a conftest)."""

from __future__ import annotations

import functools
import subprocess
import sys

import torch
import torch.nn.functional as F

from edgekd.core.config import AugmentConfig, DataConfig, TrainConfig
from edgekd.data import build_splits
from edgekd.distill.base import LOSSES
from edgekd.distill.objective import DistillModule, Objective
from edgekd.models import build_model
from edgekd.training.loop import fit, seed_everything

TINY_TEACHER = {"name": "resnet_teacher", "kwargs": {"widths": [8, 16, 32], "depth": 1}}
TINY_STUDENT = {"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}}
TINY_VIT = {"name": "vit_tiny", "kwargs": {"patch": 2, "dim": 8, "depth": 2, "heads": 2}}


@functools.cache
def tiny_data():
    """The bundled digits at 8x8 (1,797 real images)."""
    return build_splits(DataConfig(image_size=8))


def frozen(spec: dict, seed: int = 1) -> torch.nn.Module:
    seed_everything(seed)
    t = build_model(spec, 1, 10).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def make_module(terms_cfg: list[dict], student_spec=TINY_STUDENT, teachers=None, signal=None) -> DistillModule:
    """A DistillModule with the given term configs, built on two real 8x8 digits."""
    from edgekd.stages.distill import DistillConfig

    cfg = DistillConfig(stage="distill", losses=terms_cfg)
    terms = [LOSSES.get(t.kind).term_cls(t) for t in cfg.losses]
    seed_everything(0)
    student = build_model(student_spec, 1, 10)
    teachers = teachers if teachers is not None else [frozen(TINY_TEACHER)]
    return DistillModule(student, Objective(2.0, 0.5, 0.0, terms), teachers, signal, sample_batch(2)[0])


def sample_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    from edgekd.data import normalize

    data = tiny_data()
    x, y = data.arrays["train"]
    return normalize(torch.from_numpy(x[:n].copy()), data.mean, data.std), torch.from_numpy(y[:n].copy()).long()


def assert_gradients(module: DistillModule) -> None:
    """One backward pass reaches the student and every adapter/head, and never a teacher."""
    x, y = sample_batch(16)
    module.train()
    module.zero_grad()
    module.loss(module(x), y, x).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())
    extra = list(module.objective.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in extra), "an adapter got no gradient"
    assert any(p.grad.abs().sum() > 0 for p in extra) or not extra
    for t in module._teachers:
        assert all(p.grad is None for p in t.parameters())


def train_one_epoch(module: DistillModule) -> float:
    """One real epoch on 8x8 digits (9 steps); returns the best validation accuracy."""
    module.teachers_to("cpu")
    res = fit(module, tiny_data(), TrainConfig(epochs=1, batch_size=128), AugmentConfig(max_shift=1), 0,
              module.loss, "tiny")  # fmt: skip
    assert all(torch.isfinite(p).all() for p in module.student.parameters())
    return res.best_val_accuracy


def state_keys_unchanged(module: DistillModule, spec: dict) -> None:
    fresh = build_model(spec, 1, 10)
    assert set(module.student.state_dict()) == set(fresh.state_dict())


def edgekd_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def cross_entropy_to(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return -(p * F.log_softmax(logits, 1)).sum(1)

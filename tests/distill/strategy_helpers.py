"""Helpers for the strategy tests (born-again, online, progressive, data-free): a DistillEnv on 8x8 digits built
directly, without the runner, so a strategy can be called and inspected in a test."""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache

import torch
from _shared import ROOT, tiny_pipeline_doc
from torch import nn

from edgekd.core.config import DataConfig
from edgekd.core.loader import validate_document
from edgekd.core.stage import StageContext
from edgekd.data import SplitData, build_splits
from edgekd.distill.env import DistillEnv
from edgekd.models import build_model

TEACHER_SPEC = {"name": "resnet_teacher", "kwargs": {"widths": [8, 16, 32], "depth": 1}}
STUDENT_SPEC = {"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}}


@lru_cache(maxsize=1)
def tiny_data() -> SplitData:
    return build_splits(DataConfig(image_size=8))


def tiny_teacher(seed: int = 0) -> nn.Module:
    """A frozen, randomly initialised teacher (its BatchNorm running statistics are the defaults, 0 and 1)."""
    torch.manual_seed(seed)
    t = build_model(TEACHER_SPEC, 1, 10).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def tiny_env(tmp_path, data: SplitData | None = None, teachers: list[nn.Module] | None = None, **distill) -> DistillEnv:
    """A DistillEnv for the tiny pipeline's distill stage with ``distill`` keys merged in (one epoch, batch 128)."""
    doc = tiny_pipeline_doc()
    doc["stages"][1].update(distill)
    pipeline = validate_document(doc)
    cfg = pipeline.stages[1]
    ctx = StageContext(out_dir=tmp_path, pipeline=pipeline, stage_id=cfg.id, resume_dir=tmp_path / "resume")
    teachers = [tiny_teacher()] if teachers is None else teachers
    return DistillEnv(cfg, ctx, data or tiny_data(), teachers, "cpu")


def fresh_keys(spec: dict = STUDENT_SPEC) -> set[str]:
    return set(build_model(spec, 1, 10).state_dict())


def edgekd(*args, env=None):
    """The real CLI in a subprocess (as tests/test_cli.py runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600,
        env=env,
    )  # fmt: skip


def assert_one_line_error(proc, pattern: str, code: int = 2) -> None:
    import re

    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and re.search(pattern, lines[0]), lines[0]


class NoBatchNormNet(nn.Module):
    """A teacher without BatchNorm (for the data-free validate-time error)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

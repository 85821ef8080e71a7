"""Multi-process training under torchrun: 2 CPU processes (gloo, 127.0.0.1) against 1 process, same YAML.

Tolerance: the models here have no BatchNorm, so a 2-process run must equal the 1-process run up to float rounding
(gradients are summed in another order): weights within 1e-4, identical best epochs and validation accuracy. With
BatchNorm the runs are close but not equal, because in training mode each process normalises with its own shard's
batch statistics (half the batch); benchmarks/distill_speed.py --scale reports that difference for the default models.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from _shared import ROOT
from torch import nn

from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.data import SplitData

TESTS = ROOT / "tests"


class PlainCNN(nn.Module):
    """A small CNN without BatchNorm (see the module docstring for why)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def _doc() -> dict:
    """Teacher and distill stages both train (DDP), the cache is sharded over ranks, export runs on rank 0 only."""
    model = {"import": "test_distributed:PlainCNN"}
    train = {"epochs": 2, "batch_size": 100, "lr": 0.01}  # 1,169 training images: the last batch (69) splits 35/34
    return {
        "name": "dist",
        "seed": 3,
        "data": {"source": "digits", "image_size": 8, "augment": {"enabled": True, "max_shift": 1}},
        "stages": [
            {"stage": "teacher", "model": {**model, "kwargs": {"width": 12}}, "train": train},
            {
                "stage": "distill",
                "student": model,
                "train": train,
                "teacher_cache": {"enabled": True, "views": 2},
                "baseline": True,
            },
            {"stage": "export_onnx", "exporter": "torchscript", "int8": False},
        ],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(pipe, out, tmp) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "EDGEKD_QUIET": "1", "TMPDIR": str(tmp)}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "edgekd", "run", str(pipe), "-o", str(out)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _weights(run_dir, stage: str, name: str) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / stage / f"{name}.pt", weights_only=True)


def _meta(run_dir, stage: str, name: str) -> dict:
    manifest = json.loads((run_dir / stage / "manifest.json").read_text())
    return next(o["meta"] for o in manifest["outputs"] if o["name"] == name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 1-process run and one 2-process torchrun run of the same pipeline."""
    base = tmp_path_factory.mktemp("dist")
    pipe = base / "pipe.yaml"
    pipe.write_text(yaml.safe_dump(_doc(), sort_keys=False))
    single = run_pipeline(validate_document(_doc()), base / "one")
    (base / "tmp").mkdir()
    proc = _torchrun(pipe, base / "two", base / "tmp")
    return base, single, proc


def test_two_processes_match_one_process(runs):
    base, _, proc = runs
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage, name in (("01_teacher", "teacher"), ("02_distill", "student"), ("02_distill", "baseline")):
        one, two = _weights(base / "one", stage, name), _weights(base / "two", stage, name)
        assert one.keys() == two.keys()
        diff = max(float((one[k].float() - two[k].float()).abs().max()) for k in one)
        assert diff < 1e-4, f"{name}: max weight difference {diff}"
        m1, m2 = _meta(base / "one", stage, name), _meta(base / "two", stage, name)
        assert m1.get("best_epoch") == m2.get("best_epoch")
        assert m1["val_accuracy"] == pytest.approx(m2["val_accuracy"], abs=1e-9)
    n = len(SplitData.load(base / "two" / "00_data" / "dataset.npz").arrays["train"][1])
    cache = _meta(base / "two", "02_distill", "student")["teacher_cache"]
    assert cache["mode"] == "views" and cache["hits"] == 2 * -(-n // 100)  # every step of 2 epochs served from it
    assert cache["teacher_forwards"] == -(-n * 2 // 2)  # each rank computed half of the n x 2 views


def test_only_rank_zero_writes(runs):
    base, _, proc = runs
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = base / "two"

    def files(run):  # the teacher cache's file is named by the teacher's hash, which differs in the last bits
        return sorted(str(p.relative_to(run)).split("teacher-logits-")[0] for p in run.rglob("*") if p.is_file())

    assert files(base / "one") == files(two)  # the same files, written once; no per-rank copies
    assert len(list((two / ".cache").glob("teacher-logits-*.pt"))) == 1
    assert not list((base / "tmp").glob("edgekd-rank*"))  # rank 1's scratch folders were removed
    assert json.loads((two / "run.json").read_text())["stages"][-1]["status"] == "ran"
    # the torchrun-written run is a valid cache for a plain run: nothing re-runs
    again = run_pipeline(validate_document(_doc()), two)
    assert [r.status for r in again.stages] == ["cached"] * 4


def test_rank_zero_failure_stops_every_rank_with_one_line(runs, tmp_path):
    base, _, _ = runs
    pipe = base / "pipe.yaml"
    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".lock", "w") as fh:  # another run holds the lock: rank 0 cannot take it
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = _torchrun(pipe, out, tmp_path)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 2 and all("another edgekd run is using" in ln for ln in lines), proc.stderr[-2000:]
    # the only traceback is torchrun's own report that its workers failed
    assert proc.stderr.count("Traceback") == 1 and "ChildFailedError" in proc.stderr

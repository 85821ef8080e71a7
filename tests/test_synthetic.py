"""The procedural RGB photo set (edgekd.data.synthetic) and ``edgekd synth-photos``: the pre-split layout the folder
source reads, the same files for the same seed, and no overwriting."""

from __future__ import annotations

import hashlib

import numpy as np
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.core.config import DataConfig
from edgekd.data import build_splits
from edgekd.data.synthetic import CLASSES, make_photos


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_pre_split_layout_read_as_it_is_and_deterministic(tmp_path):
    counts = make_photos(tmp_path / "a", per_class=10, size=32, seed=3)
    assert counts == {"train": 60, "val": 20, "test": 20}
    make_photos(tmp_path / "b", per_class=10, size=32, seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    make_photos(tmp_path / "c", per_class=10, size=32, seed=4)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    data = build_splits(DataConfig(source="folder", path=str(tmp_path / "a"), image_size=32))
    assert data.labels == sorted(CLASSES)
    assert {s: len(data.arrays[s][1]) for s in ("train", "val", "test")} == counts
    x = data.arrays["train"][0]
    assert x.shape[1:] == (3, 32, 32) and float(x.std()) > 0.1 and len(np.unique(data.arrays["test"][1])) == 10


def test_cli_writes_a_new_folder_and_never_overwrites(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["synth-photos", str(tmp_path / "p"), "--per-class", "7", "--size", "16"])
    assert res.exit_code == 0 and "synthetic RGB set, 10 classes, 16x16" in res.output
    before = _digest(tmp_path / "p")
    res = runner.invoke(app, ["synth-photos", str(tmp_path / "p"), "--per-class", "7", "--size", "16"])
    assert res.exit_code == 2 and "is not an empty folder" in res.output
    assert _digest(tmp_path / "p") == before

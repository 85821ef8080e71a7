"""Hostile and broken inputs through the real CLI: each is one clear line and a non-zero exit, and the finished
stages of an earlier run in the same run directory stay intact (every output keeps its recorded hash)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _shared import tiny_pipeline_doc
from PIL import Image

from edgekd.core.fsutil import file_sha256
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline


class _Evil:
    def __reduce__(self):
        return (exec, ("import os; open(os.environ['EDGEKD_PWNED'], 'w').write('pwned')",))


def _folder(root, bad: str | None = None):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / c / f"{i}.png")
    if bad == "corrupt":
        (root / "a" / "evil.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    if bad == "truncated":
        data = (root / "a" / "0.png").read_bytes()
        (root / "a" / "0.png").write_bytes(data[: len(data) // 2])
    return root


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _case(name, tmp):
    x = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    y = np.arange(40) % 4
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    data = doc["data"]
    if name == "corrupt image":
        data.update(source="folder", path=str(_folder(tmp / "f", "corrupt")), channels=1)
        return doc, r"corrupt or unreadable image '.*evil.png'"
    if name == "truncated image":
        data.update(source="folder", path=str(_folder(tmp / "f", "truncated")), channels=1)
        return doc, r"corrupt or unreadable image '.*0.png'"
    if name == "wrong channel count":
        data.update(source="npz", path=str(_npz(tmp / "c.npz", x=np.repeat(x[:, None], 3, 1), y=y)), channels=1)
        return doc, r"array 'x' in '.*c.npz' has 3 channels, the config says 1"
    if name == "NaN in npz":
        bad = x.copy()
        bad[0, 0, 0] = np.nan
        data.update(source="npz", path=str(_npz(tmp / "n.npz", x=bad, y=y)))
        return doc, r"array 'x' in '.*n.npz' contains NaN or Inf"
    if name == "Inf in npz":
        bad = x.copy()
        bad[0, 0, 0] = np.inf
        data.update(source="npz", path=str(_npz(tmp / "i.npz", x=bad, y=y)))
        return doc, r"array 'x' in '.*i.npz' contains NaN or Inf"
    if name == "labels out of range":
        data.update(source="npz", path=str(_npz(tmp / "l.npz", x=x, y=y, labels=np.array(["a", "b"]))))
        return doc, r"array 'y' in '.*l.npz' has labels outside 0..1"
    if name == "empty split":
        data.update(source="npz", path=str(_npz(tmp / "e.npz", x=x[:3], y=np.array([0, 1, 2]))))
        return doc, r"split is empty"
    if name == "not a checkpoint":
        (tmp / "junk.pt").write_bytes(b"PK\x03\x04 not a zip")
        doc["stages"][0]["checkpoint"] = str(tmp / "junk.pt")
        return doc, r"'.*junk.pt' is not a loadable weights-only checkpoint"
    if name == "checkpoint for another architecture":
        torch.save({"conv.weight": torch.zeros(2, 2)}, tmp / "other.pt")
        doc["stages"][0]["checkpoint"] = str(tmp / "other.pt")
        return doc, r"'.*other.pt' does not fit the ResNetTeacher architecture"
    if name == "malicious pickle checkpoint":
        torch.save({"w": torch.zeros(1), "x": _Evil()}, tmp / "evil.pt")
        doc["stages"][0]["checkpoint"] = str(tmp / "evil.pt")
        return doc, r"'.*evil.pt' is not a loadable weights-only checkpoint"
    raise AssertionError(name)


CASES = [
    "corrupt image",
    "truncated image",
    "wrong channel count",
    "NaN in npz",
    "Inf in npz",
    "labels out of range",
    "empty split",
    "not a checkpoint",
    "checkpoint for another architecture",
    "malicious pickle checkpoint",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run whose outputs must survive every hostile run in the same directory."""
    out = tmp_path_factory.mktemp("run") / "run"
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    run_pipeline(validate_document(doc), out)
    return out


def _hashes(run_dir):
    return {str(p): file_sha256(p) for p in sorted(run_dir.glob("[0-9][0-9]_*/*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_is_one_line_and_loses_nothing(case, tmp_path, finished_run, monkeypatch):
    import re

    marker = tmp_path / "pwned"
    monkeypatch.setenv("EDGEKD_PWNED", str(marker))
    doc, pattern = _case(case, tmp_path)
    pipe = tmp_path / "p.yaml"
    pipe.write_text(json.dumps(doc))
    before = _hashes(finished_run)
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "run", str(pipe), "-o", str(finished_run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) >= 1 and lines[-1].startswith("error:") and re.search(pattern, lines[-1]), proc.stderr
    assert _hashes(finished_run) == before
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_truncated_exported_model_names_the_file(tmp_path, suffix):
    from edgekd.formats.runner import load_runner

    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    good = tmp_path / f"m{suffix}"
    if suffix == ".onnx":
        torch.onnx.export(m, (torch.zeros(1, 1, 4, 4),), str(good), dynamo=False)
    else:
        import litert_torch

        litert_torch.convert(m, (torch.zeros(1, 1, 4, 4),)).export(str(good))
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    meta = {"input_layout": "NCHW", "input_shape": [1, 1, 4, 4], "mean": [0.0], "std": [1.0]}
    with pytest.raises(Exception, match=rf"bad{suffix}") as exc:
        load_runner(bad, meta).predict(np.zeros((1, 1, 4, 4), np.float32))
    assert "\n" not in str(exc.value)

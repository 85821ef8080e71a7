"""``edgekd bench FILE`` on a model file anywhere: the file's own metadata, optional ``--data``, latency-only runs.

The real CLI in a subprocess, the real onnxruntime and LiteRT interpreter; the model is the shared exported run's
``student-int8.tflite`` (tests/_exported.py), copied into an empty folder so nothing of the run is next to it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import pytest
from _exported import MODELS, exported_doc, exported_run

import edgekd


def bench(*args, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgekd", "bench", *map(str, args), "--runs", "5", "--warmup", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def _notes(proc: subprocess.CompletedProcess) -> list[str]:
    # the console soft-wraps nothing: one note, one line (stderr holds the table and the notes)
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("note:")]


@pytest.fixture(scope="module")
def run_with_benchmark(tmp_path_factory):
    """A copy of the shared run with a benchmark stage added: every earlier stage comes from the copy's cache, only
    the benchmark (teacher + student-int8.tflite) runs. Returns (run dir, the benchmark's row for the file)."""
    src, _ = exported_run(tmp_path_factory)
    run_dir = tmp_path_factory.mktemp("bench-run") / "run"
    shutil.copytree(src, run_dir, symlinks=True)
    doc = exported_doc()
    doc["stages"].append({"stage": "benchmark", "warmup": 1, "runs": 5, "models": [MODELS["tflite-int8"]]})
    edgekd.run_pipeline(doc, run_dir)
    rows = json.loads(next(run_dir.glob("*_benchmark/benchmark.json")).read_text())["rows"]
    row = next(r for r in rows if r["name"] == "student/tflite-int8")
    assert row["status"] == "ok" and row["accuracy"] is not None
    return run_dir, row


@pytest.fixture
def lone_tflite(run_with_benchmark, tmp_path):
    run_dir, _ = run_with_benchmark
    copy = tmp_path / "copy.tflite"
    shutil.copyfile(next(run_dir.glob("*_convert_tflite/student-int8.tflite")), copy)
    return copy


def test_bench_a_copied_tflite_reads_its_embedded_metadata_latency_only(lone_tflite, tmp_path):
    proc = bench(lone_tflite, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    row = json.loads((tmp_path / "out/report.json").read_text())["variants"][0]
    assert row["status"] == "ok" and row["latency_ms"]["mean"] > 0 and row["precision"] == "int8"
    assert row["accuracy"] is None and row["n_eval"] == 0
    assert "copy.tflite" in proc.stdout + proc.stderr  # the table's row
    notes = _notes(proc)
    assert notes == ["note: accuracy not measured (no evaluation data): add --data digits, --data EVAL.npz or "
                     "--data FOLDER"]  # fmt: skip


def test_bench_data_digits_matches_the_runs_own_benchmark(run_with_benchmark, lone_tflite, tmp_path):
    _, run_row = run_with_benchmark
    proc = bench(lone_tflite, "--data", "digits", "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "out/report.json").read_text())["variants"][0]
    assert row["n_eval"] == run_row["n_eval"] == 359  # the default pipeline's test split
    assert row["accuracy"] == run_row["accuracy"]  # same file, same images, same runtime: the same answers
    assert f"{100 * run_row['accuracy']:.2f}" in proc.stdout + proc.stderr
    assert any("accuracy on the bundled digits test split (359 images at 8x8" in n for n in _notes(proc))


def test_bench_onnx_without_metadata_is_latency_only_with_a_note(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    model(torch.zeros(1, 3, 16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 16, 16),), str(tmp_path / "plain.onnx"), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    proc = bench(tmp_path / "plain.onnx", "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "out/report.json").read_text())["variants"][0]
    assert row["status"] == "ok" and row["latency_ms"]["mean"] > 0 and row["accuracy"] is None
    assert ("note: plain.onnx carries no edgekd metadata: timed on random inputs of its input tensor 'x' "
            "[1, 3, 16, 16], its dynamic batch set to 1; latency, size and memory only") in _notes(proc)  # fmt: skip
    # accuracy needs the training normalisation, which the file does not have: one line naming --meta
    proc = bench(tmp_path / "plain.onnx", "--data", "digits", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --data needs plain.onnx's normalisation") and "--meta" in proc.stderr


@pytest.mark.parametrize(
    "value, error",
    [
        ("digitz", "--data digitz: no such file or folder; expected digits, an .npz file"),
        ("notes.txt", "--data notes.txt: not an .npz file; expected digits"),
        (".", "--data .: neither a run directory (*_data/dataset.npz) nor an image folder"),
    ],
    ids=["typo", "not-npz", "empty-folder"],
)
def test_bench_bad_data_value_is_one_line_exit_1(lone_tflite, tmp_path, value, error):
    work = tmp_path / "work"  # holds one text file and no folders
    work.mkdir()
    (work / "notes.txt").write_text("not data")
    proc = bench(lone_tflite, "--data", value, cwd=work)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {error}"), proc.stderr

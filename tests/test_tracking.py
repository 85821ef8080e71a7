"""Experiment tracking: a real MLflow file store and real TensorBoard event files, read back with their own readers."""

from __future__ import annotations

import sys

import pytest
from _exported import exported_doc, exported_run
from _shared import tiny_pipeline_doc

import edgekd
from edgekd.core.errors import ConfigError


def _teacher_only(tracking: dict | None) -> dict:
    doc = tiny_pipeline_doc(name="tracked")
    doc["stages"] = [doc["stages"][0]]
    doc["stages"][0]["train"]["epochs"] = 2
    if tracking:
        doc["tracking"] = tracking
    return doc


def test_tracking_is_off_by_default(tmp_path_factory):
    run_dir, _ = exported_run(tmp_path_factory)
    assert edgekd.load_pipeline(exported_doc()).tracking.backend == "none"
    assert not (run_dir / "mlruns").exists() and not (run_dir / "tensorboard").exists()


def test_mlflow_file_store_gets_params_epochs_and_artifacts(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'edgekd[tracking]')")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    edgekd.run_pipeline(_teacher_only({"backend": "mlflow", "dir": str(store)}), tmp_path / "run")
    client = MlflowClient(store.resolve().as_uri())
    exp = client.get_experiment_by_name("tracked")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["seed"] == "0" and params["teacher.train.epochs"] == "2" and params["stage_status.teacher"] == "ran"
    history = client.get_metric_history(run.info.run_id, "teacher/val_accuracy")
    assert [m.step for m in history] == [1, 2] and all(0 <= m.value <= 1 for m in history)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "teacher/loss")] == [1, 2]
    files = {f.path for d in ("00_data", "01_teacher", "run") for f in client.list_artifacts(run.info.run_id, d)}
    assert {"00_data/dataset.npz", "01_teacher/teacher.pt", "run/run.json"} <= files


@pytest.mark.slow  # ~40 s here: the benchmark stage runs the teacher and a model in fresh agent processes
def test_mlflow_gets_the_report_figures_and_files(tmp_path_factory):
    """The shared exported run plus benchmark and report stages: every earlier stage is reused from the cache."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'edgekd[tracking]')")
    from mlflow.tracking import MlflowClient

    run_dir, _ = exported_run(tmp_path_factory)
    store = tmp_path_factory.mktemp("mlruns-report")
    doc = exported_doc()
    doc["stages"] += [
        {"stage": "benchmark", "models": ["tflite/student-int8"], "warmup": 1, "runs": 3, "eval_limit": 100},
        {"stage": "report"},
    ]
    doc["tracking"] = {"backend": "mlflow", "dir": str(store), "experiment": "report-test"}
    edgekd.run_pipeline(doc, run_dir)
    client = MlflowClient(store.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("report-test").experiment_id])
    metrics = run.data.metrics
    assert 0 <= metrics["student/tflite-int8/accuracy"] <= 1 and metrics["student/tflite-int8/latency_ms_p50"] > 0
    assert metrics["teacher/pytorch/accuracy"] > 0.5
    report_dir = next(p.name for p in run_dir.iterdir() if p.name.endswith("_report"))
    files = {f.path for f in client.list_artifacts(run.info.run_id, report_dir)}
    assert {f"{report_dir}/report.json", f"{report_dir}/report.md", f"{report_dir}/report.html"} <= files
    tflite = {f.path for f in client.list_artifacts(run.info.run_id, "04_convert_tflite")}
    assert "04_convert_tflite/student-int8.tflite" in tflite
    assert "report.md" in {f.path for f in client.list_artifacts(run.info.run_id)}


def test_tensorboard_event_files_are_read_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'edgekd[tracking]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    edgekd.run_pipeline(_teacher_only({"backend": "tensorboard"}), tmp_path / "run")
    (log_dir,) = (tmp_path / "run" / "tensorboard").iterdir()
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("teacher/val_accuracy")] == [1, 2]
    assert "stage_seconds/teacher" in acc.Tags()["scalars"]
    texts = {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in acc.Tags()["tensors"]}
    assert "| teacher.train.epochs | 2 |" in texts["params"], sorted(texts)
    assert "01_teacher/teacher.pt" in texts["artifacts"] and texts["status"] == "ok"


def test_enabled_but_missing_library_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` sees where it is not installed
    with pytest.raises(ConfigError, match=r"tracking.backend is mlflow but mlflow is not installed: pip install"):
        edgekd.run_pipeline(_teacher_only({"backend": "mlflow"}), tmp_path / "run")
    assert not (tmp_path / "run" / "00_data").exists()  # said before any stage ran

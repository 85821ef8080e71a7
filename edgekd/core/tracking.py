"""Experiment tracking (optional, off by default): params, per-epoch metrics, the report and artifacts of a run.

Enabled by the pipeline's top-level ``tracking:`` block::

    tracking: {backend: mlflow}                 # or tensorboard; dir: defaults to <run dir>/mlruns or /tensorboard

The runner opens one tracking run per ``edgekd run`` (:func:`track_run`), logs each stage's status and time, and at the
end the report's figures and the files the run produced. Training loops report each epoch through
:func:`epoch_hook`, which ``edgekd.training.loop.fit`` calls when no ``on_epoch`` callback is given, so no stage
needs to know about tracking.
A stage reused from the cache did not train: its epochs are not logged again (``--force`` retrains).

The tracking libraries are imported only when enabled: ``pip install "edgekd[tracking]"``. TensorBoard event files are
written with tensorboard's own record writer and protos (its ``SummaryWriter`` would import TensorFlow, 8 s here).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekd.core.errors import ConfigError

_active: Tracker | None = None


def _key(text: str) -> str:
    """A metric/param name every backend accepts: letters, digits, _ - . / only."""
    return re.sub(r"[^A-Za-z0-9_./-]+", "_", text.strip()).strip("_") or "value"


def _flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(obj) if not isinstance(obj, str) else obj}


class Tracker:
    """No-op tracker (backend: none); the base of the real ones."""

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_text(self, name: str, text: str) -> None: ...

    def log_artifact(self, path: Path, folder: str) -> None: ...

    def close(self, status: str) -> None: ...


class MlflowTracker(Tracker):
    """MLflow through ``MlflowClient`` (no global state). Without ``uri``: a local file store at ``dir``."""

    def __init__(self, store: Path | None, uri: str | None, experiment: str, run_name: str):
        if uri is None:
            # MLflow 3 keeps the file store in maintenance mode and refuses it unless this opt-out is set; a local
            # folder needs no database or server, which is what an edge-device workflow wants.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = Path(store).resolve().as_uri()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(_key(k)[:250], str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(k), float(v), now, step or 0) for k, v in metrics.items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_artifact(self, path: Path, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "ok" else "FAILED")


class TensorboardTracker(Tracker):
    """TensorBoard event files: scalars for metrics, text for params and the report (TensorBoard stores no files, so
    artifacts are listed by path and SHA-256 in a text entry)."""

    def __init__(self, log_dir: Path):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = event_pb2, summary_pb2
        log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.edgekd"
        self.path = log_dir / name
        self._fh = open(self.path, "wb")  # noqa: SIM115  (kept open for the whole run, closed in close())
        self._writer = RecordWriter(self._fh)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._artifacts: list[str] = []

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def log_params(self, params: dict[str, str]) -> None:
        rows = "\n".join(f"| {k} | {str(v)[:500]} |" for k, v in params.items())
        self.log_text("params", f"| param | value |\n|---|---|\n{rows}")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        s = self._summary
        values = [s.Summary.Value(tag=_key(k), simple_value=float(v)) for k, v in metrics.items()]
        self._write(self._event.Event(wall_time=time.time(), step=step or 0, summary=s.Summary(value=values)))

    def log_text(self, name: str, text: str) -> None:
        from tensorboard.compat.proto import tensor_pb2, types_pb2

        s = self._summary
        meta = s.SummaryMetadata(plugin_data=s.SummaryMetadata.PluginData(plugin_name="text"))
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode("utf-8")])
        value = s.Summary.Value(tag=_key(name), metadata=meta, tensor=tensor)
        self._write(self._event.Event(wall_time=time.time(), summary=s.Summary(value=[value])))

    def log_artifact(self, path: Path, folder: str) -> None:
        from edgekd.core.fsutil import file_sha256

        self._artifacts.append(f"| {folder}/{Path(path).name} | {path} | {file_sha256(Path(path))[:16]} |")

    def close(self, status: str) -> None:
        if self._artifacts:
            self.log_text("artifacts", "| artifact | path | sha256 |\n|---|---|---|\n" + "\n".join(self._artifacts))
        self.log_text("status", status)
        self._fh.close()


def open_tracker(cfg: Any, run_dir: Path, pipeline_name: str) -> Tracker:
    """The tracker ``cfg`` (a TrackingConfig) asks for; a missing library is one clear line, before any stage runs."""
    backend = getattr(cfg, "backend", "none")
    if backend == "none":
        return Tracker()
    run_name = f"{pipeline_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    if backend == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError(
                "tracking.backend is mlflow but mlflow is not installed: pip install 'edgekd[tracking]'"
            ) from None
        store = Path(cfg.dir) if cfg.dir else run_dir / "mlruns"
        return MlflowTracker(store, cfg.uri, cfg.experiment or pipeline_name, run_name)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(
            "tracking.backend is tensorboard but tensorboard is not installed: pip install 'edgekd[tracking]'"
        ) from None
    root = Path(cfg.dir) if cfg.dir else run_dir / "tensorboard"
    return TensorboardTracker(root / _key(run_name.replace(" ", "_").replace(":", "-")))


def epoch_hook(desc: str) -> Callable[[dict], None] | None:
    """What ``fit`` calls after each epoch while a tracked run is active: the row's numbers as ``<desc>/<name>``."""
    tracker = _active
    if tracker is None:
        return None
    prefix = _key(desc.replace(" ", "_").replace("(", "").replace(")", ""))

    def log(row: dict) -> None:
        numbers = {f"{prefix}/{k}": v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        tracker.log_metrics(numbers, step=int(row.get("epoch", 0)))

    return log


class _Safe(Tracker):
    """Tracking must never break a run: the first failure of the backend is reported once and tracking stops."""

    def __init__(self, inner: Tracker, backend: str):
        self.inner, self.backend, self.failed = inner, backend, False

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self.inner, method)(*args, **kwargs)
        except Exception as exc:
            from edgekd.core.console import log
            from edgekd.core.errors import one_line

            self.failed = True
            msg = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:200]
            log(f"[yellow]tracking ({self.backend}) failed, off for the rest of this run:[/] {msg}")

    def log_params(self, params: dict[str, str]) -> None:
        self._call("log_params", params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._call("log_metrics", metrics, step)

    def log_text(self, name: str, text: str) -> None:
        self._call("log_text", name, text)

    def log_artifact(self, path: Path, folder: str) -> None:
        self._call("log_artifact", path, folder)

    def close(self, status: str) -> None:
        self._call("close", status)


class RunTracking:
    """What the runner calls: ``stage(result)`` after each stage, ``finish(run_result)`` at the end."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def stage(self, res: Any) -> None:
        self.tracker.log_metrics({f"stage_seconds/{res.id}": res.seconds})
        self.tracker.log_params({f"stage_status.{res.id}": res.status})

    def finish(self, result: Any) -> None:
        """The report's figures as metrics; every file the run's artifacts point to, the report folder and run.json."""
        report = result.report
        metrics = {}
        rows = (report or {}).get("variants", [])
        several = len({row.get("device") for row in rows}) > 1  # one device: no device level in the names
        for row in rows:
            name = f"{row.get('device')}/{row.get('name', '?')}" if several else row.get("name", "?")
            for key in ("accuracy", "teacher_agreement", "size_bytes", "params", "macs"):
                if isinstance(row.get(key), (int, float)):
                    metrics[f"{name}/{key}"] = row[key]
            for q, v in (row.get("latency_ms") or {}).items():
                if isinstance(v, (int, float)):
                    metrics[f"{name}/latency_ms_{q}"] = v
        if metrics:
            self.tracker.log_metrics(metrics)
        files = {Path(a.path) for a in result.artifacts.values() if Path(a.path).is_file()}
        for a in result.artifacts.values():
            if a.kind == "report":  # the report's siblings: report.md/.html and the plots
                files |= {f for f in Path(a.path).parent.iterdir() if f.is_file() and f.name != "manifest.json"}
        for path in sorted(files):
            self.tracker.log_artifact(path, path.parent.name)
            if path.name == "report.md":
                self.tracker.log_text("report.md", path.read_text(encoding="utf-8"))
        run_json = Path(result.run_dir) / "run.json"
        if run_json.is_file():
            self.tracker.log_artifact(run_json, "run")


@contextmanager
def track_run(pipeline: Any, run_dir: Path) -> Iterator[RunTracking]:
    """Open the configured tracker for one run; it is what ``epoch_hook`` logs to until the run ends."""
    global _active
    cfg = getattr(pipeline, "tracking", None)
    backend = getattr(cfg, "backend", "none")
    try:
        tracker: Tracker = _Safe(open_tracker(cfg, Path(run_dir), pipeline.name), backend)
    except ConfigError:
        raise
    except Exception as exc:  # a bad URI, an unwritable folder: said before any stage runs
        raise ConfigError(
            f"tracking: cannot open the {backend} store: {(str(exc).splitlines() or [''])[0][:200]}"
        ) from None
    params = _flatten(pipeline.model_dump(mode="json", exclude={"stages", "tracking"}))
    for st in pipeline.stages:
        params.update(_flatten(st.model_dump(mode="json", exclude={"stage", "name"}), f"{st.id}"))
    tracker.log_params(params)
    previous, _active = _active, (tracker if backend != "none" else None)
    status = "failed"
    try:
        yield RunTracking(tracker)
        status = "ok"
    finally:
        _active = previous
        tracker.close(status)

"""The runner: resolve stages, hash, reuse or run each one, write manifests.

Every stage writes into a private staging folder; only when it succeeds is its manifest written (last) and the folder
renamed into place. A stage is reused when its manifest's cache key matches and every output still has its recorded
hash, so an interrupted run or a file altered after the fact is never trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from edgekd import __version__
from edgekd.core import console, rundir
from edgekd.core.artifacts import Artifact
from edgekd.core.config import PipelineConfig, StageConfig, key_dump
from edgekd.core.console import log
from edgekd.core.errors import EdgekdError, Interrupted, StageError
from edgekd.core.fsutil import atomic_write_json, ensure_free_space, json_sha256
from edgekd.core.stage import Stage, StageContext, model_key_facts
from edgekd.core.tracking import RunTracking, Tracker, track_run
from edgekd.core.versions import library_versions
from edgekd.stages import DATA_STAGES, STAGES
from edgekd.training import distributed

MANIFEST = "manifest.json"


def cache_key(stage: Stage, cfg: StageConfig, pipeline: PipelineConfig, inputs: dict[str, Artifact]) -> str:
    """Hash of everything that can change a stage's outputs: its config, inputs' content, seed (for stages that
    use it), device, versions. Options added later (``edgekd.core.config.added_later``) count only when set."""
    config = key_dump(cfg, exclude={"enabled"})
    key = {
        "stage": stage.name,
        "config": config,
        "seed": pipeline.seed if stage.seeded else None,
        "device": pipeline.device,
        "inputs": {k: v.sha256 for k, v in sorted(inputs.items())},
        "versions": library_versions(stage.libraries),
    }
    if facts := model_key_facts(cfg):  # only when there are any: the keys of runs before it stay valid
        key["files"] = facts
    if stage.revision:
        key["revision"] = stage.revision
    return json_sha256(key)


@dataclass
class StageResult:
    id: str
    stage: str
    status: str  # ran | cached | disabled
    seconds: float = 0.0
    outputs: list[Artifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    took: float | None = None  # seconds the run that made the outputs took (a cached stage: its first run's)

    def timing(self) -> dict:
        """This stage's line in the report's stage times."""
        took = self.seconds if self.took is None else self.took
        return {"name": self.id, "stage": self.stage, "status": self.status, "seconds": round(took, 3),
                "cached": self.status == "cached"}  # fmt: skip


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageResult]
    artifacts: dict[str, Artifact]

    @property
    def report(self) -> dict | None:
        rep = next((a for a in self.artifacts.values() if a.kind == "report"), None)
        return json.loads(rep.path.read_text()) if rep else None


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One ``edgekd run`` per run directory at a time; a second one is refused with a clear message."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    if rundir._is_link(lock) or (lock.exists() and not lock.is_file()):
        rundir.remove(lock)  # a planted link: opening it would create or truncate its target
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another edgekd run is using '{run_dir}'; wait for it or use another --output-dir"
            raise EdgekdError(msg) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_cached(out_dir: Path, key: str) -> tuple[list[Artifact], list[str], float | None] | None:
    """The stage's recorded outputs, notes and run time when its manifest matches ``key`` and every file still has
    its hash."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key:
        return None
    outputs = [Artifact.from_manifest(e, out_dir) for e in manifest.get("outputs", [])]
    if not all(a.verify() for a in outputs):
        log(f"  [yellow]{out_dir.name}: an output changed on disk since it was written; re-running[/]")
        return None
    seconds = manifest.get("seconds")
    return outputs, manifest.get("notes", []), float(seconds) if isinstance(seconds, int | float) else None


def _resume_dir(out_dir: Path, cfg: StageConfig, key: str) -> Path:
    # Keyed by the cache key: a changed config never resumes from another config's checkpoints.
    return rundir.child(rundir.real_dir(out_dir.parent, ".resume"), f"{cfg.id}-{key[:16]}")


_INTERRUPTED = threading.Event()  # set by Ctrl-C during a run (see _interrupts)


def _stopped(stage_id: str) -> Interrupted:
    return Interrupted(
        f"interrupted during stage '{stage_id}': finished stages are kept; run the same command again to resume"
    )


@contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C stops the run at once with exit 130, even when a library swallowed the KeyboardInterrupt (a data
    loader, an import, a converter's own ``except BaseException``): the flag is checked at every stage boundary and
    turns whatever error followed the interrupt into the interruption it was."""
    _INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _call_stage(stage: Stage, cfg: StageConfig, ctx: StageContext, inputs: dict[str, Artifact]) -> list[Artifact]:
    try:
        outputs = stage.run(cfg, ctx, inputs)
    except KeyboardInterrupt:
        raise _stopped(cfg.id) from None
    except Exception as exc:
        if _INTERRUPTED.is_set():  # the error is a consequence of Ctrl-C (e.g. a killed worker): say so, only that
            raise _stopped(cfg.id) from None
        if isinstance(exc, StageError):
            raise
        if isinstance(exc, EdgekdError):
            raise StageError(cfg.id, str(exc)) from exc
        _library_failure(cfg, exc)
    if _INTERRUPTED.is_set():  # the stage swallowed the interrupt: its outputs are not trusted
        raise _stopped(cfg.id)
    return outputs


def _library_failure(cfg: StageConfig, exc: Exception) -> None:
    """A library's own exception, reported once and named by stage (EDGEKD_DEBUG=1 prints its traceback too)."""
    if os.environ.get("EDGEKD_DEBUG") == "1":
        traceback.print_exc()
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    raise StageError(cfg.id, f"{type(exc).__name__}: {first}") from exc


class _WorkerContext(StageContext):
    """A rank other than 0 reads rank 0's checkpoints (to resume in step with it) but never creates anything."""

    def checkpoint(self, name: str) -> Path | None:
        return None if self.resume_dir is None else self.resume_dir / f"{name}.ckpt"


@dataclass(frozen=True)
class StageJob:
    """One stage to run now: its config, the artifacts it reads, where it writes, its cache key, the stages before."""

    stage: Stage
    cfg: StageConfig
    pipeline: PipelineConfig
    inputs: dict[str, Artifact]
    out_dir: Path
    key: str
    earlier: list[dict]


def _run_stage_everywhere(job: StageJob) -> StageResult:
    """Run a stage; under torchrun a ``distributed`` stage runs on every rank and any other on rank 0 alone.

    Either way rank 0 alone writes the stage's folder and manifest, and every rank continues with rank 0's outputs.
    The other ranks' copies of a distributed stage write into a scratch folder that is deleted.
    """
    stage, cfg = job.stage, job.cfg
    if not distributed.is_distributed():
        return _run_stage(job)
    if stage.distributed and not distributed.is_main():
        scratch = Path(tempfile.mkdtemp(prefix=f"edgekd-rank{distributed.rank()}-"))
        resume = _resume_dir(job.out_dir, cfg, job.key)
        cache = rundir.real_dir(job.out_dir.parent, ".cache")
        ctx = _WorkerContext(scratch, job.pipeline, cfg.id, resume, cache_key=job.key, cache_dir=cache)
        try:
            with distributed.all_ranks():
                _call_stage(stage, cfg, ctx, job.inputs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    # a stage rank 0 runs alone trains as one process (all_ranks off): the other ranks are not training with it
    with distributed.all_ranks(stage.distributed):
        return distributed.on_main(partial(_run_stage, job), cfg.id)


def _main_only_lock(run_dir: Path) -> AbstractContextManager:
    """The run lock, taken by rank 0 alone under torchrun; every rank fails if it is taken."""
    if not distributed.is_distributed():
        return run_lock(run_dir)
    stack = ExitStack()
    distributed.on_main(lambda: stack.enter_context(run_lock(run_dir)) and None)
    return stack


def _main_only_log(run_dir: Path, pipeline: PipelineConfig) -> AbstractContextManager:
    """``run.log`` in the run folder, appended to by each run (rank 0 only): every line printed, plus third-party
    output when the CLI asks for it to be captured (edgekd.core.console.run_log)."""
    if not distributed.is_main():
        return nullcontext()
    return console.run_log(run_dir / "run.log", f"edgekd {__version__} run of pipeline '{pipeline.name}'")


def _main_only_tracking(pipeline: PipelineConfig, run_dir: Path) -> AbstractContextManager[RunTracking]:
    """Experiment tracking from rank 0 only (one tracked run, not one per process)."""
    return track_run(pipeline, run_dir) if distributed.is_main() else nullcontext(RunTracking(Tracker()))


def _run_stage(job: StageJob) -> StageResult:
    stage, cfg, pipeline, inputs, out_dir, key = job.stage, job.cfg, job.pipeline, job.inputs, job.out_dir, job.key
    ensure_free_space(out_dir.parent, 0, f"run stage '{cfg.id}'")
    staging = rundir.child(rundir.real_dir(out_dir.parent, ".staging"), out_dir.name)
    rundir.remove(staging)
    staging.mkdir()
    resume = _resume_dir(out_dir, cfg, key)
    cache = rundir.real_dir(out_dir.parent, ".cache")
    ctx = StageContext(
        staging, pipeline, cfg.id, resume_dir=resume, cache_key=key, cache_dir=cache, earlier=job.earlier
    )
    t0 = time.perf_counter()
    outputs = _call_stage(stage, cfg, ctx, inputs)
    seconds = time.perf_counter() - t0
    manifest = {
        "stage": stage.name,
        "id": cfg.id,
        "key": key,
        "config": cfg.model_dump(mode="json"),
        "inputs": {k: v.sha256 for k, v in sorted(inputs.items())},
        "versions": library_versions(stage.libraries),
        "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "notes": ctx.notes,
        "outputs": [a.to_manifest(staging) for a in outputs],
    }
    atomic_write_json(staging / MANIFEST, manifest)  # the manifest is written last: it marks the stage complete
    rundir.remove(out_dir)  # the old folder, or a link planted in its place (never what it points to)
    os.replace(staging, out_dir)
    rundir.remove(resume)
    final = [Artifact.from_manifest(e, out_dir) for e in manifest["outputs"]]
    return StageResult(cfg.id, stage.name, "ran", seconds, final, ctx.notes)


def run_pipeline(pipeline: PipelineConfig, run_dir: str | Path | None = None, force: bool = False) -> RunResult:
    """Run every enabled stage in order, reusing cached outputs unless ``force``."""
    run_dir = Path(run_dir or pipeline.output_dir or Path("runs") / rundir.check_name(pipeline.name, "pipeline name"))
    if distributed.is_main():
        rundir.prepare(run_dir)
    store: dict[str, Artifact] = {}
    results: list[StageResult] = []
    with (
        _interrupts(),
        distributed.session(pipeline.device),
        _main_only_lock(run_dir),
        _main_only_tracking(pipeline, run_dir) as tracking,
        _main_only_log(run_dir, pipeline),
    ):
        plan = []  # image data source 'none': no data stage (a pipeline whose stages bring their own inputs)
        if getattr(pipeline.data, "source", None) != "none":
            data_stage = DATA_STAGES[pipeline.task]
            plan.append((data_stage, data_stage.config_cls(stage="data", **pipeline.data.model_dump())))
        plan += [(STAGES.get(c.stage).form(pipeline.task), c) for c in pipeline.stages]
        for idx, (stage, cfg) in enumerate(plan):
            if not cfg.enabled:
                results.append(StageResult(cfg.id, stage.name, "disabled"))
                log(f"[dim]- {cfg.id}: disabled[/]")
                continue
            inputs = {n: store[n] for n in stage.inputs(cfg, store)}
            key = cache_key(stage, cfg, pipeline, inputs)
            out_dir = rundir.child(run_dir, f"{idx:02d}_{rundir.check_name(cfg.id, 'stage name')}")
            cached = None if force else distributed.on_main(partial(load_cached, out_dir, key))
            if cached is not None:
                outputs, notes, took = cached
                res = StageResult(cfg.id, stage.name, "cached", 0.0, outputs, notes, took)
                log(f"[green]✓[/] {cfg.id}: cached")
            else:
                log(f"[bold cyan]▶ {cfg.id}[/]")
                console.detail(f"  [dim]{out_dir}, cache key {key[:16]}, inputs: {', '.join(inputs) or 'none'}[/]")
                console.stage_begins()
                earlier = [r.timing() for r in results]
                res = _run_stage_everywhere(StageJob(stage, cfg, pipeline, inputs, out_dir, key, earlier))
                log(f"[green]✓[/] {cfg.id}: done in {res.seconds:.1f} s")
            results.append(res)
            tracking.stage(res)
            store.update({a.name: a for a in res.outputs})
        if distributed.is_main():
            _write_run_json(run_dir, pipeline, results, store)
        result = RunResult(run_dir, results, store)
        tracking.finish(result)
    return result


def _write_run_json(run_dir: Path, pipeline: PipelineConfig, results: list[StageResult], store: dict) -> None:
    rundir.remove(run_dir / ".staging")
    atomic_write_json(
        run_dir / "run.json",
        {
            "pipeline": pipeline.name,
            "edgekd_version": __version__,
            "stages": [
                {"id": r.id, "stage": r.stage, "status": r.status, "seconds": round(r.seconds, 3)} for r in results
            ],
            "artifacts": {k: a.to_manifest(run_dir) for k, a in store.items()},
        },
    )

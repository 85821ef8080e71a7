"""The Python API: the pipeline and each stage as plain function calls, for notebooks and scripts.

    import edgekd
    cfg = edgekd.load_pipeline("pipelines/mobile_vision.yaml", ["seed=1"])
    run = edgekd.run_pipeline(cfg, "runs/nb")                      # cached like `edgekd run`
    arts = edgekd.load_run("runs/nb")                              # name -> Artifact of a finished run
    onnx = edgekd.run_stage("export_onnx", {"int8": False}, arts, "nb/onnx", pipeline=cfg)
    edgekd.predict("runs/nb/04_convert_tflite/student-int8.tflite", ["digit.png"])

Everything here is a thin layer over the modules the CLI uses; errors are edgekd errors (one line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.core.artifacts import Artifact
from edgekd.core.config import IMAGE, PipelineConfig
from edgekd.core.errors import ConfigError, EdgekdError, StageError


def load_pipeline(source: str | Path | dict | PipelineConfig, overrides: list[str] | None = None) -> PipelineConfig:
    """A validated pipeline from a YAML file, a dict (the YAML document) or a PipelineConfig, with ``a.b=c``
    overrides as ``--set`` takes them."""
    from edgekd.core.loader import load_pipeline as load_file
    from edgekd.core.loader import validate_document
    from edgekd.core.validation import apply_overrides

    if isinstance(source, PipelineConfig):
        if not overrides:
            return source
        source = source.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(source, dict):
        landed: list = []
        doc = apply_overrides(json.loads(json.dumps(source)), overrides or [], landed)
        return validate_document(doc, None, "<dict>", landed)
    return load_file(source, overrides or [])


def run_pipeline(
    pipeline: str | Path | dict | PipelineConfig,
    run_dir: str | Path | None = None,
    force: bool = False,
    overrides: list[str] | None = None,
):
    """Run a pipeline like ``edgekd run`` (same cache, same run directory layout); returns the RunResult
    (``.run_dir``, ``.stages``, ``.artifacts`` by name, ``.report`` as a dict)."""
    from edgekd.core.pipeline import run_pipeline as run

    return run(load_pipeline(pipeline, overrides), run_dir, force)


def load_run(run_dir: str | Path) -> dict[str, Artifact]:
    """The artifacts of a finished run (its run.json), by name: ``dataset``, ``student``, ``tflite/student-int8``..."""
    path = Path(run_dir) / "run.json"
    try:
        entries = json.loads(path.read_text())["artifacts"]
    except (OSError, ValueError, KeyError) as exc:
        raise EdgekdError(f"'{run_dir}' is not a finished edgekd run directory (no readable run.json: {exc})") from None
    return {name: Artifact.from_manifest(e, Path(run_dir)) for name, e in entries.items()}


def run_stage(
    stage: str,
    config: dict[str, Any] | None,
    inputs: dict[str, Artifact],
    out_dir: str | Path,
    pipeline: PipelineConfig | None = None,
) -> list[Artifact]:
    """Run one stage directly (no cache, no manifest): ``config`` is its YAML block without ``stage:``, ``inputs``
    the artifacts it reads (e.g. from :func:`load_run`), ``pipeline`` supplies seed, device and data settings.

    Outputs are written into ``out_dir``; the returned artifacts point there.
    """
    from pydantic import ValidationError

    from edgekd.stages import STAGES, StageContext

    spec = STAGES.get(stage).form(pipeline.task if pipeline else IMAGE)
    try:
        cfg = spec.config_cls.model_validate({**(config or {}), "stage": stage})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"stage '{stage}': {where}: {first['msg']}") from None
    pipe = pipeline or PipelineConfig(stages=[cfg])
    needed = spec.inputs(cfg, inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(out_dir=out, pipeline=pipe, stage_id=cfg.id)
    try:
        return spec.run(cfg, ctx, {n: inputs[n] for n in needed})
    except EdgekdError:
        raise
    except Exception as exc:  # a library failure, named by stage as the runner does
        raise StageError(cfg.id, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}") from exc


def predict(model: str | Path, images: list[str | Path], top_k: int = 5, **kwargs: Any) -> list[dict[str, Any]]:
    """``edgekd predict`` as a call: one ``{"image", "top": [{"label", "index", "probability"}]}`` per image."""
    from edgekd.formats.predict import predict_images

    return [p.as_dict() for p in predict_images(model, list(images), top_k, **kwargs)]


def inspect(model: str | Path) -> dict[str, Any]:
    """``edgekd inspect --json`` as a call."""
    from edgekd.formats.inspect import inspect_file

    return inspect_file(model)

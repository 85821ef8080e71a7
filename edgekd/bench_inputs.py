"""What the agent needs besides a model file: its metadata and an evaluation set, found next to a run's outputs.

``edgekd bench MODEL`` and the benchmark scripts accept a model straight from a run directory
(``runs/x/04_convert_tflite/student-int8.tflite``): its metadata is in the stage's manifest.json, the test split in
the run's ``*_data/dataset.npz``. Anything else is given explicitly (``--meta``, ``--data``).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgekd.array_checks import read_real_array
from edgekd.errors import ConfigError, DataError, ModelError
from edgekd.fsutil import atomic_write_json
from edgekd.metadata import check_metadata
from edgekd.safe_npz import check_npz


def _manifest_meta(manifest: Path, model: Path) -> dict | str | None:
    """The model's entry in a stage manifest; a string saying why when the manifest is not one edgekd can read."""
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{manifest} is not readable JSON ({' '.join(str(exc).split())[:120]})"
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list):
        return f"{manifest} has no 'outputs' list"
    for out in outputs:
        if isinstance(out, dict) and out.get("path") == model.name and out.get("meta"):
            if not isinstance(out["meta"], dict):
                raise ModelError(f"{manifest}: the 'meta' of {model.name} must be a JSON object; re-run its stage")
            meta = {k: v for k, v in out["meta"].items() if k != "history"}
            return check_metadata(meta, f"{manifest} ({model.name})")
    return None


def find_meta(model: Path) -> dict:
    """The model's metadata: its entry in the stage manifest next to it, ``<stem>.meta.json`` / ``<stem>.json``, or
    the metadata an .onnx / .tflite file carries. A manifest that is not edgekd's is passed over (named in the error
    when nothing else is found); a malformed entry for this model is an error."""
    manifest = model.parent / "manifest.json"
    skipped = _manifest_meta(manifest, model) if manifest.is_file() else None
    if isinstance(skipped, dict):
        return skipped
    for cand in (model.with_suffix(".meta.json"), model.with_suffix(".json")):
        if cand.is_file():
            return read_meta(cand)
    if model.suffix.lower() in (".onnx", ".tflite"):
        from edgekd.metadata import read_metadata

        embedded = read_metadata(model)
        if embedded is not None:
            return embedded
    raise ConfigError(
        f"no metadata for {model.name}: pass --meta META.json (input_shape, input_layout, mean, std), "
        f"or give a model from an edgekd run directory" + (f" ({skipped})" if skipped else "")
    )


def read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read metadata {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"metadata {path} must be a JSON object")
    return check_metadata(meta, f"metadata {path}")


def find_dataset(model: Path) -> Path:
    """The run's split data set for a model inside a run directory (``<run>/NN_stage/model``)."""
    found = sorted(model.resolve().parent.parent.glob("*_data/dataset.npz"))
    if not found:
        raise ConfigError(f"no evaluation data for {model.name}: pass --data EVAL.npz (x float32 N,C,H,W in [0, 1], y)")
    return found[0]


def write_eval_npz(source: Path, out: Path, teacher_pred: np.ndarray | None = None) -> Path:
    """Write the agent's eval file (x, y[, teacher_pred]) from an eval .npz or a pipeline dataset's test split."""
    check_npz(source, keys={"x_test", "y_test", "x", "y", "teacher_pred"})
    try:
        with np.load(source, allow_pickle=False) as npz:
            keys = set(npz.files)
            if {"x_test", "y_test"} <= keys:
                arrays = {k: read_real_array(npz, f"{k}_test", source) for k in ("x", "y")}
            elif "x" in keys:
                arrays = {k: read_real_array(npz, k, source) for k in ("x", "y", "teacher_pred") if k in keys}
            else:
                raise DataError(f"{source} has neither x (an eval set) nor x_test/y_test (an edgekd dataset)")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a damaged member: bad CRC, cut
        raise DataError(f"cannot read evaluation data {source}: {' '.join(str(exc).split())}") from None
    if teacher_pred is not None:
        arrays["teacher_pred"] = teacher_pred
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def write_meta(meta: dict, out: Path) -> Path:
    return atomic_write_json(out, meta)


def run_dir_variants(run_dir: Path) -> tuple[list, Path | None]:
    """The models a pipeline run's benchmark stage measured, as Variants, and its teacher predictions (if any).

    Read from the stage's ``<variant>.meta.json`` files (``student_tflite-int8.meta.json`` is student-int8.tflite from
    the convert stage; ``*_pytorch`` are the ``.pt2`` programs the stage exported).
    """
    from edgekd.transports.measure import Variant

    bench = next(iter(sorted(run_dir.glob("*_benchmark"))), None)
    if bench is None:
        raise ConfigError(f"{run_dir} has no benchmark stage folder (*_benchmark): run the pipeline first")
    runtime = {"pytorch": ("pt2", "torch"), "onnx": ("onnx", "onnxruntime"), "tflite": ("tflite", "litert")}
    variants = []
    for meta in sorted(bench.glob("*.meta.json")):
        artifact, _, kind = meta.name.removesuffix(".meta.json").partition("_")
        fmt, _, precision = kind.partition("-")
        ext, rt = runtime[fmt]
        found = (
            [bench / f"{artifact}.pt2"] if fmt == "pytorch" else sorted(run_dir.glob(f"*/{artifact}-{precision}.{ext}"))
        )
        if found and found[0].is_file():
            name = f"{artifact}/{kind}"
            row = {"format": fmt, "precision": precision or "fp32", "size_bytes": found[0].stat().st_size}
            variants.append(Variant(name, found[0], meta, rt, row))
    preds = bench / "teacher_pred.npy"
    return variants, preds if preds.is_file() else None

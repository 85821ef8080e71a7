"""What the agent needs besides a model file: its metadata and, for accuracy, an evaluation set.

``edgekd bench MODEL`` and the benchmark scripts accept a model straight from a run directory
(``runs/x/04_convert_tflite/student-int8.tflite``): its metadata is in the stage's manifest.json, the test split in
the run's ``*_data/dataset.npz``. A file anywhere else brings the metadata edgekd embedded in it (ONNX
``metadata_props``, TFLite ``Model.metadata``); a file with none is timed from its own input tensor (latency only).
Evaluation data is ``--data``: ``digits`` (the bundled set, rebuilt as the default pipeline splits it), an ``.npz``,
a run directory or an image folder.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgekd.core.array_checks import read_real_array
from edgekd.core.errors import ConfigError, DataError, ModelError
from edgekd.core.fsutil import atomic_write_json
from edgekd.core.npzfile import check_npz
from edgekd.formats.metadata import check_metadata


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


def locate_meta(model: Path) -> tuple[dict | None, str]:
    """(metadata, where from) as :func:`find_meta` finds it: ``manifest``, ``sidecar`` or ``embedded``; (None, why)
    when the file has none (why: a manifest that was passed over, or "")."""
    manifest = model.parent / "manifest.json"
    skipped = _manifest_meta(manifest, model) if manifest.is_file() else None
    if isinstance(skipped, dict):
        return skipped, "manifest"
    for cand in (model.with_suffix(".meta.json"), model.with_suffix(".json")):
        if cand.is_file():
            return read_meta(cand), "sidecar"
    if model.suffix.lower() in (".onnx", ".tflite"):
        from edgekd.formats.metadata import read_metadata

        embedded = read_metadata(model)
        if embedded is not None:
            return embedded, "embedded"
    return None, skipped or ""


def run_dataset(model: Path) -> Path | None:
    """The run's split data set when ``model`` is an output its stage manifest names (``<run>/NN_stage/model``)."""
    manifest = model.parent / "manifest.json"
    try:
        listed = manifest.is_file() and isinstance(_manifest_meta(manifest, model), dict)
    except ModelError:
        listed = False
    found = sorted(model.resolve().parent.parent.glob("*_data/dataset.npz")) if listed else []
    return found[0] if found else None


def find_meta(model: Path) -> dict:
    """The model's metadata: its entry in the stage manifest next to it, ``<stem>.meta.json`` / ``<stem>.json``, or
    the metadata an .onnx / .tflite file carries. A manifest that is not edgekd's is passed over (named in the error
    when nothing else is found); a malformed entry for this model is an error."""
    meta, skipped = locate_meta(model)
    if meta is not None:
        return meta
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


def meta_from_input(model: Path) -> tuple[dict, str]:
    """Metadata for timing a file that carries none (a plain ``torch.onnx.export``, a TFLite from elsewhere), and a
    note saying so: the shape of the file's own input tensor, a dynamic batch set to 1, no normalisation. Only for
    latency: without the training normalisation and label order no accuracy can be measured."""
    from edgekd.formats.metadata import check_metadata, file_io

    if model.suffix.lower() == ".pt2":
        raise ConfigError(f"no metadata for {model.name} (a .pt2 program carries none): pass --meta META.json")
    inputs, _ = file_io(model)
    if len(inputs) != 1:
        raise ConfigError(f"{model.name} has {len(inputs)} inputs and no edgekd metadata: pass --meta META.json")
    name, shape = inputs[0]["name"], inputs[0]["shape"]
    known = [isinstance(d, int) and d > 0 for d in shape]
    if len(shape) != 4 or not all(known[1:]) or (known[0] and shape[0] != 1):
        why = "edgekd times batch-1 image models, [N, C, H, W] or [N, H, W, C] with only N dynamic"
        raise ConfigError(
            f"{model.name} has no edgekd metadata and its input '{name}' is {shape}: {why}; pass --meta META.json "
            "(input_shape, input_layout)"
        )
    dims = [1, *shape[1:]]
    # The layout only names the order; the agent feeds the file's own shape either way (random inputs, no accuracy).
    nhwc = dims[3] in (1, 3, 4) and dims[1] not in (1, 3, 4)
    c, h, w = (dims[3], dims[1], dims[2]) if nhwc else dims[1:]
    meta = check_metadata({"input_shape": [1, c, h, w], "input_layout": "NHWC" if nhwc else "NCHW"}, model.name)
    batch = "" if known[0] else ", its dynamic batch set to 1"
    note = (f"{model.name} carries no edgekd metadata: timed on random inputs of its input tensor '{name}' "
            f"{dims}{batch}; latency, size and memory only")  # fmt: skip
    return meta, note


DIGITS_SPLIT = "split_seed 0, test_fraction 0.2, val_fraction 0.15, as the pipelines' default data block"


def eval_data(spec: str, model: Path, meta: dict, out: Path) -> tuple[Path, str]:
    """The agent's eval file for ``--data SPEC`` and a note naming it. SPEC is ``digits`` (the bundled digits' test
    split, rebuilt as a pipeline with the default split builds it, at the model's input size), an ``.npz`` (eval
    ``x``/``y``, or an edgekd dataset: its test split), a run directory (its dataset's test split) or an image folder
    ``root/<class>/<image>`` (every image, classes matched to the model's labels by name)."""
    path = Path(spec).expanduser()  # the word digits wins over a folder of that name (give ./digits for that)
    found = (sorted(path.glob("*_data/dataset.npz")) or sorted(path.glob("dataset.npz"))) if path.is_dir() else []
    if (spec == "digits" or (path.is_dir() and not found)) and "input_shape" not in meta:
        raise DataError(f"--data {spec}: {model.name} is a text model, not an image classifier")
    if spec == "digits":
        return _digits(meta, model, out)
    if path.is_file() and path.suffix.lower() == ".npz":
        return write_eval_npz(path, out), f"accuracy on {path}"
    if found:
        return write_eval_npz(found[0], out), f"accuracy on the test split of {found[0]}"
    if path.is_dir():
        return _image_folder(path, meta, model, out)
    accepted = "expected digits, an .npz file, a run directory or an image folder (root/<class>/<image>)"
    what = "not an .npz file" if path.is_file() else "no such file or folder"
    raise DataError(f"--data {spec}: {what}; {accepted}")


def _digits(meta: dict, model: Path, out: Path) -> tuple[Path, str]:
    from edgekd.core.config import DataConfig
    from edgekd.data import build_splits

    _, _, h, w = meta["input_shape"]
    labels = meta.get("labels")
    if h != w or not 4 <= h <= 1024:
        raise DataError(f"--data digits: {model.name} takes {h}x{w} images; the digits are built square, 4 to 1024 px")
    if labels is not None and len(labels) != 10:
        raise DataError(f"--data digits: the digits have 10 classes, {model.name} has {len(labels)} labels")
    x, y = build_splits(DataConfig(source="digits", image_size=h)).arrays["test"]
    with open(out, "wb") as fh:
        np.savez(fh, x=x, y=y)
    return out, f"accuracy on the bundled digits test split ({len(y)} images at {h}x{w}; {DIGITS_SPLIT})"


def _image_folder(root: Path, meta: dict, model: Path, out: Path) -> tuple[Path, str]:
    """Every image of ``root/<class>/<image>`` through the training preprocessing, as an eval file."""
    from edgekd.core.npzfile import max_array_bytes
    from edgekd.data.sources import IMAGE_SUFFIXES, load_image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, c) for c in classes for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(
            f"--data {root}: neither a run directory (*_data/dataset.npz) nor an image folder (root/<class>/<image>, "
            f"{', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    labels = [str(v) for v in meta.get("labels") or []]
    if labels and set(classes) <= set(labels):
        index = {c: labels.index(c) for c in classes}  # by name: a folder may hold some of the classes
    elif not labels or len(classes) == len(labels):
        index = {c: i for i, c in enumerate(classes)}  # sorted by name, as the folder data source numbers them
    else:
        raise DataError(
            f"--data {root}: its class folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) are "
            f"not among {model.name}'s {len(labels)} labels"
        )
    _, c, h, w = meta["input_shape"]
    need = len(files) * c * h * w * 4
    if need > max_array_bytes():
        raise DataError(
            f"--data {root}: {len(files):,} images at {c}x{h}x{w} take {need / 2**20:,.0f} MB, over the "
            f"{max_array_bytes() / 2**20:,.0f} MB limit (EDGEKD_MAX_ARRAY_MB)"
        )
    x = np.empty((len(files), c, h, w), np.float32)
    how = (meta.get("preprocessing") or {}).get("fit", "stretch")
    for i, (f, _) in enumerate(files):
        x[i] = load_image(f, c, (h, w), how)
    y = np.asarray([index[cls] for _, cls in files], np.int64)
    with open(out, "wb") as fh:
        np.savez(fh, x=x, y=y)
    return out, f"accuracy on {len(files)} images in {root} ({len(classes)} class folders)"


def run_dir_variants(run_dir: Path) -> tuple[list, Path | None]:
    """The models a pipeline run's benchmark stage measured, as Variants, and its teacher predictions (if any).

    Read from the stage's ``<variant>.meta.json`` files (``student_tflite-int8.meta.json`` is student-int8.tflite from
    the convert stage; ``*_pytorch`` are the ``.pt2`` programs the stage exported).
    """
    from edgekd.edge.transports.measure import Variant

    bench = next(iter(sorted(run_dir.glob("*_benchmark"))), None)
    if bench is None:
        raise ConfigError(f"{run_dir} has no benchmark stage folder (*_benchmark): run the pipeline first")
    from edgekd.formats.registry import by_label

    variants = []
    for meta in sorted(bench.glob("*.meta.json")):
        artifact, _, kind = meta.name.removesuffix(".meta.json").partition("_")
        fmt, _, precision = kind.partition("-")
        ext, rt = by_label(fmt).suffix.lstrip("."), by_label(fmt).runtime
        found = (
            [bench / f"{artifact}.pt2"] if fmt == "pytorch" else sorted(run_dir.glob(f"*/{artifact}-{precision}.{ext}"))
        )
        if found and found[0].is_file():
            name = f"{artifact}/{kind}"
            row = {"format": fmt, "precision": precision or "fp32", "size_bytes": found[0].stat().st_size}
            variants.append(Variant(name, found[0], meta, rt, row))
    preds = bench / "teacher_pred.npy"
    return variants, preds if preds.is_file() else None

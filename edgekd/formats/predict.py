"""``edgekd predict``: classify image files with an exported model, preprocessed exactly as in training.

The preprocessing comes from the model's own metadata (edgekd.formats.metadata) and runs through the same function
the data pipeline uses (edgekd.data.sources.load_image); inference goes through the device agent's Runner, the code that
verified and benchmarked the file. A file without edgekd metadata can still be run when the caller gives what the
metadata would have said (``mean``, ``std``, ``labels``; the input shape and layout are read from the file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import DataError, ModelError
from edgekd.formats.metadata import check_input_shape


@dataclass
class Prediction:
    """One image's result: the top-k (label, class index, probability) and the full logits."""

    image: str
    top: list[dict[str, Any]]
    logits: list[float] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "top": self.top}


def read_labels(spec: str | Path) -> list[str]:
    """Labels from a text file (one per line, blank lines ignored) or a comma-separated list."""
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read label file '{path}': {exc}") from None
        labels = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not labels:
            raise DataError(f"label file '{path}' is empty")
        return labels
    if "," in str(spec):
        return [s.strip() for s in str(spec).split(",")]
    raise DataError(f"label file '{spec}' does not exist (give a file with one label per line, or 'a,b,c')")


def _input_from_file(path: Path) -> tuple[list[int], str]:
    """Input shape in NCHW terms and layout, from the file alone (for models without metadata)."""
    from edgekd.formats.inspect import guess_layout, inspect_file

    inp = inspect_file(path)["inputs"][0]
    shape = inp["shape"]
    layout = guess_layout(shape).split(" ")[0]
    if len(shape) != 4 or layout == "unknown" or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise ModelError(
            f"{path.name}: cannot tell the input layout from its input shape {shape}; "
            "edgekd predict handles 4-D image inputs with 1 or 3 channels"
        )
    n_c_h_w = [1, shape[1], shape[2], shape[3]] if layout == "NCHW" else [1, shape[3], shape[1], shape[2]]
    return check_input_shape(n_c_h_w, f"{path}: input '{inp['name']}' shape", rank=4), layout


def resolve_metadata(
    model: str | Path,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """The model's metadata, with any value given here taking precedence; says what is missing when it cannot run."""
    from edgekd.formats.metadata import read_metadata

    path = Path(model)
    md = read_metadata(path)
    if md is None:
        missing = [n for n, v in (("--mean", mean), ("--std", std), ("--labels", labels)) if v is None]
        if missing:
            raise ModelError(
                f"{path.name} has no edgekd metadata (it was not exported by edgekd): give {', '.join(missing)} "
                "(the training normalisation on [0, 1] pixels and the class labels)"
            )
        shape, layout = _input_from_file(path)
        md = {"input_shape": shape, "input_layout": layout}
    md = dict(md)
    if md.get("task", "image-classification") != "image-classification":
        raise ModelError(f"{path.name} is a {md['task']} model; edgekd predict classifies images")
    if mean is not None:
        md["mean"] = [float(v) for v in mean]
    if std is not None:
        md["std"] = [float(v) for v in std]
    if labels is not None:
        md["labels"] = list(labels)
    missing = [f"--{k}" for k in ("mean", "std", "labels") if k not in md]
    if missing:
        raise ModelError(
            f"{path.name}: its edgekd metadata has no {', '.join(k[2:] for k in missing)}: give {', '.join(missing)}"
        )
    channels = md["input_shape"][1]
    for key in ("mean", "std"):
        if len(md[key]) == 1 and channels > 1:
            md[key] = md[key] * channels
        if len(md[key]) != channels:
            raise ModelError(f"{key} has {len(md[key])} values but {path.name} takes {channels} channel(s)")
    if any(s <= 0 for s in md["std"]):
        raise ModelError("every std value must be > 0")
    return md


def preprocess(images: list[str | Path], md: dict[str, Any]) -> np.ndarray:
    """Image files -> float32 (N, C, H, W) in [0, 1], exactly as training saw them; normalisation is the runner's."""
    from edgekd.data.sources import load_image

    _, c, h, w = md["input_shape"]
    how = (md.get("preprocessing") or {}).get("fit", "stretch")
    return np.stack([load_image(Path(p), c, (h, w), how) for p in images])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_images(
    model: str | Path,
    images: list[str | Path],
    top_k: int = 5,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    labels: list[str] | None = None,
    threads: int = 1,
) -> list[Prediction]:
    """Run an exported model (.onnx / .tflite, fp32 or int8) on image files; top-k labels and probabilities each."""
    from edgekd.formats.runner import agent, load_runner
    from edgekd.formats.tflite.via_litert_torch import quiet_native_output

    path = Path(model)
    if not images:
        raise DataError("no images given")
    md = resolve_metadata(path, mean, std, labels)
    for img in images:
        if not Path(img).is_file():
            raise DataError(f"image file not found: {img}")
    x = preprocess(images, md)
    try:
        with quiet_native_output():  # the runtime's "INFO: Created ... delegate" lines are noise on a CLI's stderr
            runner = load_runner(path, md, threads)
        n_out = runner.io_details()["outputs"][0]["shape"][-1]
        if n_out > 0 and n_out != len(md["labels"]):
            raise ModelError(f"{len(md['labels'])} labels given but {path.name} outputs {n_out} classes")
        logits = runner.predict(x)
    except agent().AgentError as exc:
        raise ModelError(str(exc)) from None
    if logits.shape[1] != len(md["labels"]):
        raise ModelError(f"{len(md['labels'])} labels given but {path.name} outputs {logits.shape[1]} classes")
    probs = softmax(logits.astype(np.float64))
    k = max(1, min(top_k, probs.shape[1]))
    out = []
    for img, p, lg in zip(images, probs, logits, strict=True):
        order = np.argsort(-p, kind="stable")[:k]
        top = [{"label": md["labels"][i], "index": int(i), "probability": float(p[i])} for i in order]
        out.append(Prediction(str(img), top, [float(v) for v in lg]))
    return out

"""The model file formats edgekd writes and measures, in one table: adding a format is one row here, the stage that
writes its files, and the device agent's runner for it (docs/design.md: "Adding an export format").

A leaf: artifacts, the benchmark stage, ``edgekd bench``, the report's plots and the file metadata all read from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileFormat:
    kind: str  # artifact kind: what stages pass each other (edgekd.core.artifacts)
    label: str  # the report's Format column and the metadata's "format"
    suffix: str  # the file's extension
    runtime: str  # the device agent's runtime that runs it (devices/agent.py load_runner)
    marker: str  # plot marker
    color: str  # plot colour


FILE_FORMATS: dict[str, FileFormat] = {
    f.kind: f
    for f in (
        FileFormat("torch", "pytorch", ".pt2", "torch", "o", "#4c72b0"),
        FileFormat("onnx", "onnx", ".onnx", "onnxruntime", "s", "#55a868"),
        FileFormat("tflite", "tflite", ".tflite", "litert", "^", "#8172b2"),
    )
}
MODEL_KINDS = tuple(FILE_FORMATS)


def by_label(label: str) -> FileFormat | None:
    return next((f for f in FILE_FORMATS.values() if f.label == label), None)


def by_suffix(suffix: str) -> FileFormat | None:
    return next((f for f in FILE_FORMATS.values() if f.suffix == suffix.lower()), None)

"""Typed artifact handles: what stages pass to each other. A handle is a file plus the metadata that travels with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekd.core.fsutil import file_sha256

ARTIFACT_KINDS: dict[str, type[Artifact]] = {}


@dataclass
class Artifact:
    """A file produced by a stage; ``name`` is how later stages ask for it (``student``, ``tflite/student-int8``)."""

    name: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    kind: ClassVar[str] = "file"

    def __init_subclass__(cls, **kwargs) -> None:  # every subclass is found by its kind when a manifest is read
        super().__init_subclass__(**kwargs)
        ARTIFACT_KINDS[cls.kind] = cls

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.sha256 and self.path.is_file():
            self.sha256 = file_sha256(self.path)

    def to_manifest(self, base: Path) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path.relative_to(base)),
            "sha256": self.sha256,
            "meta": self.meta,
        }

    @staticmethod
    def from_manifest(entry: dict, base: Path) -> Artifact:
        cls = ARTIFACT_KINDS.get(entry["kind"], Artifact)
        return cls(entry["name"], base / entry["path"], entry.get("meta", {}), entry["sha256"])

    def verify(self) -> bool:
        """True when the file on disk still has the hash recorded when it was written."""
        return self.path.is_file() and file_sha256(self.path) == self.sha256


class Dataset(Artifact):
    """The split data set (``.npz``: x/y per split, labels, mean, std)."""

    kind = "dataset"


class TorchModel(Artifact):
    """A PyTorch state_dict plus ``meta['model']`` (the spec that rebuilds the architecture)."""

    kind = "torch"


class OnnxModel(Artifact):
    kind = "onnx"


class TfliteModel(Artifact):
    kind = "tflite"


class Benchmark(Artifact):
    """Measured rows (JSON), one per model variant."""

    kind = "benchmark"


class Report(Artifact):
    kind = "report"

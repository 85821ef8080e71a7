"""Atomic file writes and content hashes.

Every artifact edgekd writes goes through these helpers: data lands in a temporary file in the same folder and is
renamed into place, so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_MIN_FREE_MB = 200.0  # refuse to start a stage with less free disk (EDGEKD_MIN_FREE_MB overrides)


def min_free_mb() -> float:
    """``EDGEKD_MIN_FREE_MB``, read when needed: a malformed value is a one-line error, not a crash at import."""
    from edgekd.core.errors import ConfigError

    raw = os.environ.get("EDGEKD_MIN_FREE_MB")
    if raw is None or not raw.strip():
        return DEFAULT_MIN_FREE_MB
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 <= value < 2**40):  # also refuses nan and inf
        raise ConfigError(f"EDGEKD_MIN_FREE_MB={raw!r} must be a number of megabytes >= 0 (default 200)")
    return value


def ensure_free_space(directory: str | os.PathLike, needed_bytes: int = 0, what: str = "write") -> None:
    """Fail before a write when the disk cannot take it (plus a margin), instead of leaving a full disk mid-write."""
    from edgekd.core.errors import EdgekdError

    margin_mb = min_free_mb()
    directory = Path(directory)
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    free = shutil.disk_usage(directory).free
    need = needed_bytes + int(margin_mb * 2**20)
    if free < need:
        raise EdgekdError(
            f"not enough free disk space in '{directory}' to {what}: {free / 2**20:.0f} MB free, "
            f"{need / 2**20:.0f} MB needed (EDGEKD_MIN_FREE_MB={margin_mb:g} MB kept free); "
            f"nothing was overwritten"
        )


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; artifacts are ordinary files
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    ensure_free_space(Path(path).parent, len(data), f"write {Path(path).name}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()

"""Check the sizes an ``.npz`` (or ``.npy``) file declares before numpy loads anything from it.

A zip member is inflated to the uncompressed size its zip entry declares, and numpy allocates the shape its ``.npy``
header declares before reading a byte, so a 4 MB file can ask for 4 GiB (a "deflate bomb" of zeros) or for more
memory than exists. :func:`check_npz` reads only the zip directory and the ``.npy`` headers and refuses a file whose
members would take more than ``EDGEKD_MAX_ARRAY_MB`` megabytes in memory (default :data:`DEFAULT_MAX_ARRAY_MB`:
1 GiB, room for CIFAR-10's train set as float32, 600 MB), each member counted at the larger of its two declared sizes.
edgekd's own split files stay usable however large: their image arrays are memory-mapped, not read (``mapped``).

devices/agent.py keeps a copy of this check (it imports nothing from edgekd).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError

ENV = "EDGEKD_MAX_ARRAY_MB"
DEFAULT_MAX_ARRAY_MB = 1024


def max_array_bytes() -> int:
    """The limit in bytes: ``EDGEKD_MAX_ARRAY_MB`` megabytes, or :data:`DEFAULT_MAX_ARRAY_MB`."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_ARRAY_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not (mb > 0 and math.isfinite(mb)):
        raise DataError(f"{ENV}={raw!r} must be a positive number of megabytes (default {DEFAULT_MAX_ARRAY_MB})")
    return round(mb * 2**20)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}" if n >= 10 * 2**20 else f"{n / 2**20:.3g}"


def _npy_bytes(fh) -> tuple[int, str]:
    """In-memory size and a description (shape, dtype) of the array whose ``.npy`` header ``fh`` is at."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return math.prod(shape) * dtype.itemsize, f"shape {shape} {dtype}"


def declared_sizes(path: Path) -> dict[str, tuple[int, str, bool]]:
    """Each member as numpy names it (``x`` for ``x.npy``): (bytes it would take in memory, what it declares, whether
    it can be memory-mapped: stored uncompressed with all its bytes present). A plain ``.npy`` file is one member
    named ``""``; anything else is left to numpy to refuse."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
            if magic == b"\x93NUMPY":
                fh.seek(0)
                size, what = _npy_bytes(fh)
                return {"": (size, what, True)}
        if not magic.startswith(b"PK"):
            return {}
        out, file_len = {}, path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                size, what = info.file_size, f"{info.file_size:,} bytes uncompressed"
                if info.filename.endswith(".npy"):
                    with zf.open(info) as member:
                        npy_size, what = _npy_bytes(member)
                    size = max(size, npy_size)
                stored = info.compress_type == zipfile.ZIP_STORED
                mappable = stored and size <= info.compress_size and info.header_offset + size <= file_len
                out[info.filename.removesuffix(".npy")] = (size, what, mappable)
        return out
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file: {' '.join(str(exc).split())[:160]}") from None


def check_npz(path: Path, keys: Collection[str] | None = None, mapped: Collection[str] = ()) -> None:
    """Refuse ``path`` when the arrays ``keys`` (default: every member) would take more than the limit in memory.

    ``mapped`` names arrays the caller memory-maps when they are stored uncompressed: those cost no memory (when
    their bytes are all in the file; one whose header declares more is counted).
    """
    limit = max_array_bytes()
    members = declared_sizes(path)
    counted = {
        name: (size, what)
        for name, (size, what, mappable) in members.items()
        if (keys is None or name in keys) and not (mappable and name in mapped)
    }
    total = sum(size for size, _ in counted.values())
    if total <= limit:
        return
    name, (size, what) = max(counted.items(), key=lambda kv: kv[1][0])
    raise DataError(
        f"'{path}': array '{name}' ({what}) would take {_mb(size)} MB in memory, {_mb(total)} MB in all; "
        f"edgekd loads at most {_mb(limit)} MB from one .npz "
        f"(set {ENV} higher if the data is real)"
    )

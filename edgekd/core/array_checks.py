"""What an array read from a user's ``.npz`` must hold: real numbers. numpy happily loads complex, string and void
arrays, and ``astype(np.float32)`` then drops an imaginary part with only a warning, so the data would be silently
changed. Kept apart from ``edgekd.data`` so that ``edgekd bench`` can use it without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import DataError

REAL_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def check_real_array(arr: np.ndarray, name: str, path: str | Path) -> np.ndarray:
    """``arr`` itself when its dtype is real (bool, integer, float); a one-line DataError naming it otherwise."""
    if arr.dtype.kind not in REAL_KINDS:
        raise DataError(
            f"array '{name}' in '{path}' has dtype {arr.dtype}: expected real numbers (integers or floats), "
            "not complex numbers, strings or objects"
        )
    return arr


def read_real_array(npz: Any, name: str, path: str | Path) -> np.ndarray:
    """``npz[name]`` from an ``np.load(..., allow_pickle=False)`` archive, checked by :func:`check_real_array`."""
    try:
        arr = npz[name]
    except ValueError as exc:  # an object array needs pickle, which edgekd never allows
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"array '{name}' in '{path}' holds Python objects (dtype object, stored as a pickle): expected real "
                "numbers"
            ) from None
        raise
    return check_real_array(arr, name, path)

"""Versions of edgekd and the libraries a stage ran with: part of every cache key and every report."""

from __future__ import annotations

import importlib.metadata

from edgekd import __version__

BASE_LIBRARIES = ("torch", "numpy")


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    out = {"edgekd": __version__}
    for n in BASE_LIBRARIES + names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = "absent"
    return out

"""Find an installed package's folder without importing it: the names come from YAML, and importing runs code.

``importlib.util.find_spec("a.b")`` imports ``a`` (its ``__init__`` runs) to find ``b``; only a model's ``import:``
path may ever run code. :class:`importlib.machinery.PathFinder` only looks at the folders on ``sys.path``.
"""

from __future__ import annotations

import re
from importlib.machinery import PathFinder
from pathlib import Path

TOP_LEVEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # a top-level package name: no dots, nothing to import first


def package_dir(name: str) -> Path | None:
    """The folder of the regular top-level package ``name`` on ``sys.path``, or None; nothing is imported.

    Raises ValueError for a name that is not a top-level package name (``a.b``, ``../x``).
    """
    if not TOP_LEVEL.match(name):
        raise ValueError(f"'{name}' is not a top-level package name (letters, digits and _, no dots)")
    spec = PathFinder.find_spec(name)
    # a regular package: a folder with __init__.py; a lone module's folder would be all of site-packages
    if spec is None or not spec.origin or not spec.submodule_search_locations or not Path(spec.origin).is_file():
        return None
    return Path(spec.origin).parent

"""The run folder: every path the runner creates, replaces or deletes is resolved here, and stays inside it.

Rules, so that no pipeline file, stage name or planted link can make a run touch anything else:

* names that become folder names (the pipeline's ``name``, each stage's ``name``) match :data:`SAFE_NAME` — no
  ``/``, no leading dot, so never ``.`` or ``..`` (checked by the config models; :func:`child` checks again);
* a folder edgekd makes below the run folder is a real directory: a symbolic link found in its place is removed
  (the link, never what it points to) before anything is written there;
* deleting never follows a link (:func:`remove`);
* the run folder itself is the user's choice (``-o`` or ``output_dir``), but an existing non-empty folder that holds
  no edgekd run is refused, so a mistyped ``-o ~`` cannot fill or prune a home folder.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path

from edgekd.core.errors import ConfigError, EdgekdError

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # a name that is one harmless path component
_SAFE = re.compile(SAFE_NAME)
RUN_MARKERS = (".lock", "run.json")  # a folder with one of these is (or was) an edgekd run folder


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _SAFE.match(name):
        raise ConfigError(
            f"{what} {name!r} cannot name a folder: use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
            f"or digit"
        )
    return name


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def remove(path: Path) -> None:
    """Delete ``path`` whatever it is, without following links: a link is unlinked, never its target."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)  # fd-based on Linux: links found inside are unlinked, not followed
    else:
        os.unlink(path)


def child(root: Path, name: str) -> Path:
    """``root/name`` for a single safe component ``name``."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise EdgekdError(f"refusing the path component {name!r} below '{root}'")
    return root / name


def real_dir(root: Path, *names: str) -> Path:
    """``root/names...`` as real directories, made as needed: a link, file or anything else found in the way below
    ``root`` is removed first (only the entry itself), so nothing written there can land outside ``root``."""
    path = root
    for name in names:
        path = child(path, name)
        if _is_link(path) or (path.exists() and not path.is_dir()):
            remove(path)
        path.mkdir(exist_ok=True)
    return path


def _explain(exc: OSError, path: Path, what: str) -> EdgekdError:
    reason = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way",
        errno.ENOSPC: "the disk is full",
        errno.ENAMETOOLONG: "the name is too long",
    }.get(exc.errno, exc.strerror or type(exc).__name__)
    return EdgekdError(f"cannot use '{path}' as {what}: {reason}; choose another folder with -o")


def prepare(run_dir: Path) -> Path:
    """Check and create the run folder before anything else touches it."""
    from edgekd.core.fsutil import min_free_mb

    min_free_mb()  # a malformed EDGEKD_MIN_FREE_MB is said before anything runs
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise EdgekdError(f"the run folder '{run_dir}' is a file, not a folder; choose another folder with -o")
    if run_dir.is_dir():
        try:
            entries = [e.name for e in os.scandir(run_dir)]
        except OSError as exc:
            raise _explain(exc, run_dir, "the run folder") from None
        looks_like_run = any(m in entries for m in RUN_MARKERS) or any(
            re.match(r"^\d\d_", e) and (run_dir / e / "manifest.json").is_file() for e in entries
        )
        if entries and not looks_like_run:
            raise EdgekdError(
                f"the run folder '{run_dir}' is not empty and holds no edgekd run ({len(entries)} entries, no "
                f"run.json); choose a new or empty folder with -o, so nothing of yours is overwritten"
            )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".edgekd-write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise _explain(exc, run_dir, "the run folder") from None
    return run_dir

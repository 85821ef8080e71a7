"""Errors meant for people: one line, saying what was wrong and where."""

from __future__ import annotations

import errno
import os

DEBUG_ENV = "EDGEKD_DEBUG"  # EDGEKD_DEBUG=1: errors show their Python traceback (for bug reports)


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV) == "1"


def one_line(text: str) -> str:
    """Collapse a message to one printable line (escapes control characters and unicode line separators)."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in " ".join(text.split("\n"))
    )


class EdgekdError(Exception):
    """Base class for every error edgekd reports to a user (printed as one line, exit code 1 or 2)."""

    exit_code = 1

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


class ConfigError(EdgekdError):
    """A pipeline or profile file is missing, malformed or invalid.

    Several problems found together: ``message`` is the heading (``3 errors in pipe.yaml:``) and ``problems`` the
    one-line problems; ``str()`` stays one line (heading and problems joined), the CLI prints one problem per line.
    """

    exit_code = 2

    def __init__(self, message: str = "", problems: list[str] | None = None):
        self.problems = [one_line(p) for p in problems or []]
        self.heading = one_line(message)
        super().__init__(" ".join([message, " | ".join(self.problems)]) if self.problems else message)


class DataError(EdgekdError):
    """A dataset is missing, empty or malformed."""


class ModelError(EdgekdError):
    """A model, checkpoint or exported file cannot be built, loaded or converted."""


class StageError(EdgekdError):
    """A stage failed; the message names the stage."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"stage '{stage}': {message}")
        self.stage = stage


class Interrupted(EdgekdError):
    """Ctrl-C: the run stopped; finished stages are kept and the same command resumes."""

    exit_code = 130


_OS_ADVICE = {
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.ENOSPC: "free some disk space",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file",
    errno.ELOOP: "it is a symbolic link edgekd will not follow",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_unexpected(exc: BaseException) -> str:
    """One line for an exception no edgekd code turned into an :class:`EdgekdError` (the last guard of the CLI)."""
    if isinstance(exc, OSError):
        where = " ".join(f"'{f}'" for f in (exc.filename, exc.filename2) if f is not None)
        what = exc.strerror or str(exc) or type(exc).__name__
        advice = _OS_ADVICE.get(exc.errno, "")
        return one_line(f"{what}{': ' + where if where else ''}{'; ' + advice if advice else ''}")
    if isinstance(exc, MemoryError):
        return "out of memory: the input is too large for this machine (smaller batch, data or model)"
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return one_line(f"unexpected {type(exc).__name__}: {first} (set {DEBUG_ENV}=1 to see the traceback)")

"""The one rich console, progress bars and run log every stage uses, so output stays consistent and can be silenced.

Three levels: quiet (errors and the final table only; also ``EDGEKD_QUIET=1``), normal, verbose (edgekd's details,
and third-party output left on the console). Every line printed through here is also appended to the run's log
(``runs/<name>/run.log``, see :func:`run_log`), which also receives what third-party libraries print during a run —
Python warnings and anything C code writes to file descriptors 1 and 2 (torch.onnx's "torchvision is not installed",
LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate") — instead of the console, where it would land between
progress lines. Progress bars and the step spinner (:func:`step`) are drawn only on a terminal; the per-epoch lines
print everywhere unless quiet.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
)
from rich.spinner import Spinner
from rich.text import Text

# Not a terminal (CI logs, pipes): rich would assume 80 columns and squeeze the results table; logs can be wide.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 180)

QUIET, NORMAL, VERBOSE = 0, 1, 2
_state: dict = {"level": NORMAL, "capture": False, "log": None, "step": None}


def set_verbosity(level: int, capture: bool = False) -> None:
    """``edgekd run --quiet/--verbose``; ``capture``: third-party output goes to the run log, not the console."""
    _state["level"], _state["capture"] = level, capture


def verbosity() -> int:
    return QUIET if os.environ.get("EDGEKD_QUIET") == "1" else _state["level"]


def _interactive() -> bool:
    if console._force_terminal is not None:  # Console(force_terminal=...): a caller (or a test) decided
        return console._force_terminal
    try:
        return console.file.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class _Rate(ProgressColumn):
    """Items per second, in the task's own unit (``unit`` field): ``9.1 batch/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit")
        text = "" if speed is None else f"{speed:,.1f} {unit}/s" if unit else f"{speed:,.2f}/s"
        return Text(text, style="progress.data.speed")


class _Left(ProgressColumn):
    """Time left for this task at its current rate: ``43 s left``."""

    max_refresh = 0.5

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        return Text("" if left is None or task.finished else f"{duration(left)} left", style="progress.remaining")


def progress() -> Progress:
    """A transient bar with count, rate and time left; hidden off a terminal and when quiet."""
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        _Left(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=verbosity() == QUIET or not _interactive(),
    )


def _one_line(text: str) -> Text:
    """The step line fitted to the terminal, cut on the left: its end names the innermost, most telling step."""
    room = max(console.width - 2, 10)  # the spinner and a space
    return Text(text if len(text) <= room else "…" + text[-(room - 1) :])


@contextlib.contextmanager
def step(text: str) -> Iterator[None]:
    """A transient spinner naming what runs now (``edgekd validate`` building models for its checks); hidden off a
    terminal and when quiet. A nested step adds its part to the line (``validating p.yaml: checking stage 'prune':
    building mobilenetv2_student``) and takes it off when it ends."""
    if verbosity() == QUIET or not _interactive():
        yield
        return
    running = _state["step"]
    if running is None:
        spinner = Spinner("dots", _one_line(text), style="status.spinner")
        with Live(spinner, console=console, transient=True, refresh_per_second=12.5) as live:
            _state["step"] = (live, spinner, [text])
            try:
                yield
            finally:
                _state["step"] = None
        return
    live, spinner, parts = running

    def show() -> None:
        spinner.update(text=_one_line(": ".join(parts)))
        live.refresh()

    parts.append(text)
    show()
    try:
        yield
    finally:
        parts.pop()
        show()


def _to_log(msg: str) -> None:
    fh = _state["log"]
    if fh is not None:
        with contextlib.suppress(OSError, ValueError):
            fh.write(Text.from_markup(msg).plain + "\n")


def log(msg: str) -> None:
    """A line for the console (unless quiet) and the run log; ``msg`` may hold rich markup."""
    if verbosity() >= NORMAL:
        console.print(msg)
    _to_log(msg)


def detail(msg: str) -> None:
    """A line for the console with ``--verbose`` only; always in the run log."""
    if verbosity() >= VERBOSE:
        console.print(msg)
    _to_log(msg)


# --------------------------------------------------------------------------- the stage clock (ETA for a stage)


_clock: dict = {"pending": {}, "epochs": 0, "seconds": 0.0}


def stage_begins() -> None:
    """Called by the runner before each stage: the stage ETA starts from nothing."""
    _clock.update(pending={}, epochs=0, seconds=0.0)


def will_train(desc: str, epochs: int) -> None:
    """A stage announces a training it will start later (the distill stage's scratch baseline), so the ETA printed
    after the first epoch covers it too; the training with the same ``desc`` takes it off when it starts."""
    _clock["pending"][desc] = epochs


def training_begins(desc: str) -> None:
    _clock["pending"].pop(desc, None)


def epoch_done(seconds: float, epochs_left: int) -> float:
    """Record one finished epoch; returns the stage's estimated seconds left (this training and announced ones)."""
    _clock["epochs"] += 1
    _clock["seconds"] += seconds
    per_epoch = _clock["seconds"] / _clock["epochs"]
    return per_epoch * (epochs_left + sum(_clock["pending"].values()))


def duration(seconds: float) -> str:
    """``42 s``, ``4 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- the run log


def _open_log(path: Path) -> TextIO:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:  # a link or something else planted there: remove the entry itself (never its target), retry
        from edgekd.core import rundir

        rundir.remove(path)
        fd = os.open(path, flags, 0o644)
    return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace", buffering=1)


def _real_std_streams() -> bool:
    """True when sys.stdout/sys.stderr are the process's fds 1 and 2 (not a test runner's or a notebook's)."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def run_log(path: Path, title: str) -> Iterator[None]:
    """Append this run's lines to ``path``. With capture on (``edgekd run`` without ``--verbose``) Python warnings go
    there instead of the console, and so does everything third-party code writes to fds 1 and 2 (when they are the
    process's own: not under a test runner or in a notebook). Library use (capture off) keeps its warnings."""
    fh = _open_log(path)
    fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n")
    # console._file: None means "whatever sys.stderr is at the time", which must come back as it was
    previous_log, previous_warn, previous_file = _state["log"], warnings.showwarning, console._file
    _state["log"] = fh
    capture = _state["capture"] and verbosity() < VERBOSE

    def to_log(message, category, filename, lineno, file=None, line=None) -> None:
        with contextlib.suppress(OSError, ValueError):
            fh.write(warnings.formatwarning(message, category, filename, lineno, line))

    if capture:
        warnings.showwarning = to_log
    saved: list[int] = []
    if capture and _real_std_streams():
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        # the console keeps writing to the terminal (a copy of fd 2); fds 1 and 2 themselves now write to the log
        console.file = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8", errors="replace", buffering=1)
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        if saved:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            with contextlib.suppress(OSError):
                console.file.close()
            console.file = previous_file
        warnings.showwarning = previous_warn
        _state["log"] = previous_log
        fh.close()

"""Console output: per-epoch lines and stage ETA, quiet/verbose, and third-party output kept in the run log."""

import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from _shared import tiny_pipeline_doc
from rich.console import Console

from edgekd.core import console
from edgekd.core.config import AugmentConfig, DataConfig, TrainConfig
from edgekd.core.loader import validate_document
from edgekd.data import build_splits
from edgekd.models import build_model
from edgekd.training.loop import epoch_line, fit


@pytest.fixture
def screen(monkeypatch):
    """What the console prints (not a terminal: no bars), at the normal level."""
    monkeypatch.delenv("EDGEKD_QUIET", raising=False)
    # _file, not file: the property reads back sys.stderr, and monkeypatch would pin the console to it afterwards
    monkeypatch.setattr(console.console, "_file", io.StringIO())
    monkeypatch.setitem(console._state, "level", console.NORMAL)
    console.stage_begins()
    return console.console.file


@pytest.fixture
def terminal(monkeypatch):
    """A console that draws as on a terminal (what `edgekd validate` in a shell gets), into a string."""
    monkeypatch.delenv("EDGEKD_QUIET", raising=False)
    monkeypatch.setitem(console._state, "level", console.NORMAL)
    monkeypatch.setattr(console, "console", Console(force_terminal=True, file=io.StringIO(), width=200))
    return console.console.file


def _pruned_doc() -> dict:
    doc = tiny_pipeline_doc()
    doc["stages"].insert(2, {"stage": "prune", "ratio": 0.5, "steps": 1, "round_to": None})
    return doc


def test_step_spinner_names_what_runs_now_on_a_terminal(terminal):
    with (
        console.step("validating p.yaml"),
        console.step("checking stage 'prune'"),
        console.step("building mobilenetv2_student"),
    ):
        pass
    drawn = terminal.getvalue()
    assert "validating p.yaml: checking stage 'prune': building mobilenetv2_student" in drawn
    assert drawn.endswith("\x1b[2K")  # transient: the line is erased when the step ends
    assert console._state["step"] is None


def test_validate_shows_each_stage_check_on_a_terminal(terminal):
    threads = torch.get_num_threads()
    validate_document(_pruned_doc(), where="p.yaml")
    drawn = terminal.getvalue()
    assert "checking stage 'distill'" in drawn
    assert "checking stage 'prune': building tiny_cnn" in drawn
    assert "checking stage 'prune': tracing TinyCNN for torch-pruning" in drawn
    assert torch.get_num_threads() == threads  # the checks run on one thread, then give the count back


def test_step_prints_nothing_off_a_terminal_or_when_quiet(screen, terminal, monkeypatch):
    monkeypatch.setattr(console, "console", Console(file=screen))  # not a terminal
    validate_document(_pruned_doc(), where="p.yaml")
    assert screen.getvalue() == ""
    monkeypatch.setattr(console, "console", Console(force_terminal=True, file=terminal))
    monkeypatch.setitem(console._state, "level", console.QUIET)
    with console.step("validating p.yaml"):
        pass
    assert terminal.getvalue() == ""


def test_fit_leaves_one_line_per_epoch_with_the_stage_eta(screen):
    data = build_splits(DataConfig(image_size=8))
    model = build_model({"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}}, 1, 10)
    console.will_train("baseline (scratch)", 2)  # announced: counted in the ETA until it starts

    def loss(logits, y, _x):
        return F.cross_entropy(logits, y)

    fit(model, data, TrainConfig(epochs=2, batch_size=256), AugmentConfig(enabled=False), 0, loss, "student")
    lines = screen.getvalue().splitlines()
    assert [ln.split(" · ")[:2] for ln in lines] == [["  student", "epoch 1/2"], ["  student", "epoch 2/2"]]
    assert all("val acc" in ln and " s" in ln for ln in lines)
    assert console._clock["epochs"] == 2 and console._clock["pending"] == {"baseline (scratch)": 2}


def test_stage_eta_covers_the_announced_trainings():
    console.stage_begins()
    console.will_train("baseline (scratch)", 10)
    assert console.epoch_done(3.0, epochs_left=19) == pytest.approx(3.0 * 29)
    console.training_begins("baseline (scratch)")
    assert console.epoch_done(1.0, epochs_left=9) == pytest.approx(2.0 * 9)
    assert console.duration(42) == "42 s" and console.duration(240) == "4 min" and console.duration(9000) == "2.5 h"


def test_epoch_line_shows_loss_parts_only_when_there_are_several():
    row = {"epoch": 3, "loss": 0.5, "val_accuracy": 0.9, "val_loss": 0.3}
    line = epoch_line("distill", row, 20, 2.0, 120.0, {"base": 0.4, "0:feature": 0.1})
    assert line == (
        "  distill · epoch 3/20 · loss 0.5000 (base 0.400, 0:feature 0.100) · val acc 0.9000 (loss 0.3000) · 2.0 s"
        " · ETA 2 min for this stage"
    )


def test_quiet_keeps_the_console_empty_but_the_log_complete(screen, monkeypatch, tmp_path):
    monkeypatch.setitem(console._state, "level", console.QUIET)
    with console.run_log(tmp_path / "run.log", "test"):
        console.log("[green]✓[/] teacher: done")
        console.detail("cache key abc")
    assert screen.getvalue() == ""
    assert "✓ teacher: done\ncache key abc\n" in (tmp_path / "run.log").read_text()  # plain text, no markup


def test_third_party_output_goes_to_the_run_log_not_the_console(tmp_path):
    """What C code writes to fds 1/2 (LiteRT's XNNPACK line) and Python warnings land in run.log; edgekd's own lines
    reach the terminal and the log. In a subprocess: the real fds 1 and 2, as in ``edgekd run``."""
    script = textwrap.dedent(f"""
        import os, warnings
        from pathlib import Path
        from edgekd.core import console
        console.set_verbosity(console.NORMAL, capture=True)
        with console.run_log(Path({str(tmp_path / "run.log")!r}), "test"):
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
            os.write(1, b"a C library printing to stdout\\n")
            warnings.warn("torchvision is not installed")
            console.log("epoch 1/2 line")
        print("after the run")
    """)
    env = {k: v for k, v in os.environ.items() if k != "EDGEKD_QUIET"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "epoch 1/2 line" and res.stdout == "after the run\n"
    log = (tmp_path / "run.log").read_text()
    for text in ("XNNPACK delegate", "C library printing", "torchvision is not installed", "epoch 1/2 line"):
        assert text in log

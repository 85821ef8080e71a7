"""The attack suite, part 1: names that would become paths, planted links, hostile output folders, malformed
environment, Ctrl-C, and the CLI's last guard. Parts 2 and 3: ``test_attacks_inputs.py`` (unbounded and malformed
inputs) and ``test_attacks_code.py`` (files and names that would run code). The harness is ``tests/_attack.py``.

Each attack asserts what a user must get: a non-zero exit with one ``error:`` line and no traceback, nothing written,
changed or deleted outside the run folder (hashes of the trees around it before and after), and a finished run
inside it intact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _attack import assert_refused, edgekd, snapshot
from _shared import tiny_pipeline_doc

from edgekd.core.errors import ConfigError, EdgekdError, Interrupted
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline


def _two_stage_doc(**overrides) -> dict:
    doc = tiny_pipeline_doc(**overrides)
    doc["stages"] = doc["stages"][:2]
    return doc


@pytest.fixture
def arena(tmp_path):
    """A work folder (the child's cwd) inside a parent holding files an attack must not touch."""
    (tmp_path / "bystander").mkdir()
    (tmp_path / "bystander" / "notes.txt").write_text("mine")
    work = tmp_path / "work"
    work.mkdir()
    return work


# --------------------------------------------------------------------------- names become paths


@pytest.mark.parametrize(
    "override",
    [
        "name=..",
        "name=.",
        "name=../escape",
        "name=/tmp/abs",
        "name=.hidden",
        "teacher.name=../../x",
        "teacher.name=a/b",
    ],
)
def test_names_that_would_leave_the_run_folder_are_refused_by_the_config(override):
    doc = _two_stage_doc()
    key, _, value = override.partition("=")
    if key == "name":
        doc["name"] = value
    else:
        doc["stages"][0]["name"] = value
    with pytest.raises(ConfigError, match=r"name: String should match pattern"):
        validate_document(doc)


@pytest.mark.parametrize("yaml_name", ["..", "../../outside"])
def test_hostile_names_through_the_cli_write_nothing(arena, yaml_name):
    doc = _two_stage_doc(name=yaml_name)
    (arena / "p.yaml").write_text(json.dumps(doc))
    before = snapshot(arena.parent)
    res = edgekd("run", "p.yaml", cwd=arena, timeout=90)
    assert_refused(res, r"p\.yaml:\d+: ", r"name: String should match pattern", code=2)
    assert snapshot(arena.parent) == before  # not even runs/ was made


def test_runner_checks_names_even_when_the_config_was_built_without_validation(tmp_path):
    cfg = validate_document(_two_stage_doc())
    cfg.stages[0].name = "../escape"  # a library user building configs by hand
    with pytest.raises(ConfigError, match=r"stage name '../escape' cannot name a folder"):
        run_pipeline(cfg, tmp_path / "run")
    cfg.stages[0].name = None
    cfg.name = ".."
    os.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"pipeline name '..' cannot name a folder"):
        run_pipeline(cfg)
    assert not (tmp_path / "run.json").exists()


# --------------------------------------------------------------------------- planted links


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    cfg = validate_document(_two_stage_doc())
    run_pipeline(cfg, root / "run")
    return root / "run", cfg


def _copy_run(finished, dest: Path) -> Path:
    import shutil

    shutil.copytree(finished[0], dest, symlinks=True)
    return dest


def _victim(root: Path) -> Path:
    victim = root / "victim"
    (victim / "01_teacher").mkdir(parents=True)
    (victim / "keep.txt").write_text("precious")
    (victim / "01_teacher" / "keep.txt").write_text("precious too")
    (victim / "lockfile").write_text("do not truncate")
    return victim


@pytest.mark.parametrize("planted", [".staging", "01_teacher", ".cache", ".resume", ".lock", "run.json"])
def test_links_planted_in_a_run_folder_are_never_followed(finished, tmp_path, planted):
    run = _copy_run(finished, tmp_path / "run")
    victim = _victim(tmp_path)
    target = victim / "lockfile" if planted in (".lock", "run.json") else victim
    link = run / planted
    if link.is_dir() and not link.is_symlink():
        import shutil

        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)
    before = snapshot(victim)
    run_pipeline(finished[1], run, force=True)  # every stage re-runs: staging, replace, resume and cache all used
    assert snapshot(victim) == before
    assert not (run / planted).is_symlink()
    assert (run / "01_teacher" / "manifest.json").is_file()


# --------------------------------------------------------------------------- hostile output folders


def _write_doc(arena: Path) -> None:
    (arena / "p.yaml").write_text(json.dumps(_two_stage_doc()))


def test_output_folder_that_is_a_file(arena):
    _write_doc(arena)
    (arena / "afile").write_text("keep")
    before = snapshot(arena.parent)
    res = edgekd("run", "p.yaml", "-o", "afile", cwd=arena)
    assert_refused(res, r"'afile' is a file, not a folder")
    res = edgekd("run", "p.yaml", "-o", "afile/below", cwd=arena)
    assert_refused(res, r"cannot use 'afile/below' as the run folder: a part of the path is a file")
    assert snapshot(arena.parent) == before


def test_output_folder_that_holds_someone_elses_files(arena):
    _write_doc(arena)
    (arena / "home").mkdir()
    (arena / "home" / "thesis.tex").write_text("years of work")
    before = snapshot(arena.parent)
    res = edgekd("run", "p.yaml", "-o", "home", cwd=arena)
    assert_refused(res, r"'home' is not empty and holds no edgekd run")
    assert snapshot(arena.parent) == before


def _make_read_only(path: Path) -> bool:
    """A folder nobody can write to, root included (chattr +i); False where the file system cannot do it."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_output_folder_that_cannot_be_written(arena):
    _write_doc(arena)
    locked = arena / "locked"
    locked.mkdir()
    if not _make_read_only(locked):
        pytest.skip("this file system cannot make a folder read-only for root (chattr +i failed)")
    try:
        res = edgekd("run", "p.yaml", "-o", "locked/run", cwd=arena)
        assert_refused(
            res, r"cannot use 'locked/run' as the run folder: (permission denied|the file system is read-only)"
        )
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=False)
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf", "1e999"])
def test_malformed_min_free_space_is_one_line(arena, value):
    from edgekd.core.fsutil import min_free_mb

    os.environ["EDGEKD_MIN_FREE_MB"] = value
    try:
        with pytest.raises(ConfigError, match=r"EDGEKD_MIN_FREE_MB=.* must be a number of megabytes"):
            min_free_mb()
    finally:
        del os.environ["EDGEKD_MIN_FREE_MB"]


def test_malformed_min_free_space_through_the_cli(arena):
    _write_doc(arena)
    res = edgekd("run", "p.yaml", "-o", "r", cwd=arena, env={"EDGEKD_MIN_FREE_MB": "abc"})
    assert_refused(res, r"EDGEKD_MIN_FREE_MB='abc' must be a number")
    assert not (arena / "r").exists()


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_distill_stops_at_once_with_exit_130(arena):
    doc = _two_stage_doc()
    doc["stages"][1]["train"]["epochs"] = 10_000  # minutes: only Ctrl-C ends it
    doc["stages"].append({"stage": "export_onnx", "exporter": "torchscript"})
    (arena / "p.yaml").write_text(json.dumps(doc))
    env = {**os.environ, "EDGEKD_QUIET": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekd", "run", "p.yaml", "-o", "r"],
        cwd=arena,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (arena / "r" / ".staging" / "02_distill").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.5)  # inside the training loop
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "interrupted during stage 'distill'" in lines[-1], err
    assert "run the same command again to resume" in lines[-1]
    assert not any(p.name.startswith("03_") for p in (arena / "r").iterdir())  # the next stage never started
    assert (arena / "r" / "01_teacher" / "manifest.json").is_file()


def test_an_interrupt_swallowed_by_a_library_still_stops_the_run():
    """A library that catches KeyboardInterrupt and raises something else (or returns) must not hide Ctrl-C."""
    from edgekd.core.pipeline import _call_stage, _interrupts
    from edgekd.core.stage import Stage

    def swallowing(cfg, ctx, inputs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise RuntimeError("onnxruntime is missing") from None

    def silent(cfg, ctx, inputs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            return []

    cfg = validate_document(_two_stage_doc()).stages[0]
    for fn in (swallowing, silent):
        stage = Stage("x", type(cfg), fn, lambda c, s: [])
        with _interrupts(), pytest.raises(Interrupted, match=r"interrupted during stage 'teacher'") as exc:
            _call_stage(stage, cfg, None, {})
        assert exc.value.exit_code == 130


# --------------------------------------------------------------------------- the CLI's last guard


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from edgekd import cli

    def boom(*a, **k):
        raise PermissionError(13, "Permission denied", "/root/secret.yaml")

    monkeypatch.setattr("edgekd.core.loader.load_pipeline", boom)
    runner = CliRunner()
    res = runner.invoke(cli.app, ["validate", "any.yaml"])
    assert res.exit_code == 1
    out = res.output.strip().splitlines()
    assert out[-1] == "error: Permission denied: '/root/secret.yaml'; check its permissions"
    monkeypatch.setenv("EDGEKD_DEBUG", "1")
    res = runner.invoke(cli.app, ["validate", "any.yaml"])
    assert isinstance(res.exception, PermissionError)  # the traceback is shown, for a bug report


def test_help_documents_edgekd_debug():
    from typer.testing import CliRunner

    from edgekd import cli

    res = CliRunner().invoke(cli.app, ["--help"])
    assert res.exit_code == 0 and "EDGEKD_DEBUG=1" in res.output


def test_every_error_class_is_an_edgekd_error():
    assert issubclass(Interrupted, EdgekdError) and Interrupted.exit_code == 130

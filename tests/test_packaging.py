"""A wheel install (not only the editable one CI uses) carries the device agent, its tokenizer, the profiles and the
pipelines, and `edgekd init` copies a pipeline out of it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def test_listed_packages_are_every_package_under_edgekd():
    from setuptools import find_packages

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted(
        [*find_packages(str(ROOT), include=["edgekd*"]), "edgekd._devices", "edgekd._pipelines"]
    )


def test_wheel_ships_agent_profiles_and_pipelines(tmp_path):
    src = tmp_path / "src"  # a copy, so that setuptools' build/ and egg-info land there, not in the checkout
    for name in ("edgekd", "devices", "pipelines"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("edgekd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "devices").iterdir() if p.suffix in {".py", ".yaml"}}
    assert {f"edgekd/_devices/{n}" for n in shipped} <= names
    pipelines = {p.relative_to(ROOT / "pipelines").as_posix() for p in (ROOT / "pipelines").rglob("*.yaml")}
    assert "methods/feature.yaml" in pipelines and {f"edgekd/_pipelines/{n}" for n in pipelines} <= names

    # Unpack it elsewhere and import from there: the agent and the profiles resolve inside the installed package.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import edgekd, edgekd.edge.profiles as d, edgekd.formats.runner as r;"
        "print(edgekd.__file__); print(r.agent_path()); print(' '.join(d.known_profiles()));"
        "import edgekd.cli.templates as t; print(t.pipelines_dir())"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    pkg, agent, profiles, pipelines_dir = res.stdout.strip().splitlines()[-4:]
    assert pipelines_dir == str(site / "edgekd" / "_pipelines")
    assert pkg.startswith(str(site)), "the unpacked wheel, not the source tree, was imported"
    assert agent == str(site / "edgekd" / "_devices" / "agent.py")
    assert sorted(profiles.split()) == sorted(p.stem for p in (ROOT / "devices").glob("*.yaml"))

    # `edgekd init` from the unpacked wheel: the template comes from inside it and runs from anywhere
    work = tmp_path / "work"
    work.mkdir()
    cli = [sys.executable, "-c", "from edgekd.cli import entry; entry()"]
    res = subprocess.run([*cli, "init", "mobile_vision"], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    # the same file, except that the commands in its comments name the copy
    shipped = (ROOT / "pipelines" / "mobile_vision.yaml").read_text()
    assert "edgekd run pipelines/mobile_vision.yaml" in shipped
    expected = "\n".join(
        ln.replace("pipelines/mobile_vision.yaml", "mobile_vision.yaml") if ln.lstrip().startswith("#") else ln
        for ln in shipped.split("\n")
    )
    assert (work / "mobile_vision.yaml").read_text() == expected
    res = subprocess.run([*cli, "validate", "mobile_vision.yaml"], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "valid" in res.stdout, res.stderr[-2000:]
    res = subprocess.run([*cli, "templates"], cwd=work, env=env, capture_output=True, text=True)
    assert "methods/feature" in res.stdout and "raspberry-pi-4" in res.stdout

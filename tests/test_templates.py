"""`edgekd templates` / `edgekd init`: every shipped pipeline and device profile, copied anywhere, still validates."""

import subprocess
import sys

import pytest
from _shared import ROOT

from edgekd.cli.templates import copy_template, find, header_line, templates
from edgekd.core.errors import EdgekdError
from edgekd.core.loader import load_pipeline
from edgekd.edge.profiles import load_profile

SHIPPED = templates()


def edgekd(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_every_pipeline_and_profile_is_a_template():
    names = {t.name for t in SHIPPED}
    pipelines = {p.relative_to(ROOT / "pipelines").with_suffix("").as_posix() for p in ROOT.glob("pipelines/**/*.yaml")}
    assert pipelines | {p.stem for p in (ROOT / "devices").glob("*.yaml")} == names
    assert all(t.description() and "\n" not in t.description() for t in SHIPPED)


@pytest.mark.parametrize("template", SHIPPED, ids=lambda t: t.name)
def test_a_copy_validates_from_another_folder(template, tmp_path, monkeypatch):
    """No template depends on where it lives: copied into a new folder and read from a third one, it is valid."""
    _, path = copy_template(template.name, tmp_path / "copy")
    monkeypatch.chdir(tmp_path)
    if template.kind == "pipeline":
        load_pipeline(path)
        assert f"edgekd run {template.source}" not in path.read_text()  # the header's command names the copy
    else:
        assert load_profile(path).transport in ("local", "ssh", "adb")


def test_names_resolve_with_or_without_their_folder():
    assert find("methods/feature").name == find("feature").name == find("pipelines/methods/feature.yaml").name
    assert find("raspberry-pi-4").kind == "device"
    with pytest.raises(EdgekdError, match=r"no template named 'mobil'; did you mean 'mobile_vision'"):
        find("mobil")


def test_header_line_is_the_first_sentence():
    assert header_line("# Born-Again networks (Furlanello et al. 2018): no teacher. More.\n#\nname: x\n") == (
        "Born-Again networks (Furlanello et al. 2018): no teacher."
    )
    assert header_line("# edgekd default pipeline: a small classifier.\n") == "a small classifier."


def test_init_copies_and_refuses_to_overwrite(tmp_path):
    res = edgekd("init", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    copied = tmp_path / "mobile_vision.yaml"
    assert "edgekd run mobile_vision.yaml" in copied.read_text() and "next: edgekd validate" in res.stdout
    copied.write_text("# mine\n")
    res = edgekd("init", "mobile_vision", ".", cwd=tmp_path)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1 and "already exists; add --force" in lines[0], res.stderr
    assert copied.read_text() == "# mine\n"
    assert edgekd("init", "mobile_vision", "--force", cwd=tmp_path).returncode == 0
    assert copied.read_text() == (ROOT / "pipelines" / "mobile_vision.yaml").read_text().replace(
        "pipelines/mobile_vision.yaml", "mobile_vision.yaml"
    )
    res = edgekd("init", "raspberry-pi-4", "boards/pi.yaml", cwd=tmp_path)
    assert res.returncode == 0 and load_profile(tmp_path / "boards" / "pi.yaml").ssh.host == "raspberrypi.local"


def test_templates_lists_them_with_their_description(tmp_path):
    res = edgekd("templates", cwd=tmp_path)
    assert res.returncode == 0
    out = res.stdout
    for name in ("mobile_vision", "methods/feature", "raspberry-pi-4"):
        assert name in out
    assert "Feature distillation (FitNets hints" in out

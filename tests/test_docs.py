"""The docs: a short README, reference pages generated from the code (and current), a site that builds strictly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_reference
    finally:
        sys.path.pop(0)
    return gen_reference


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "EXAMPLE_TABLE" not in text
    links = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if not t.startswith("http")]
    assert links and all((ROOT / t).is_file() for t in links), [t for t in links if not (ROOT / t).is_file()]


def test_reference_pages_are_generated_and_current():
    """The committed reference pages are exactly what docs/gen_reference.py writes: nobody edits them by hand."""
    pages = _generator().pages()
    for name in ("reference/yaml.md", "reference/cli.md"):
        committed = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert committed == pages[name], f"docs/{name} is stale: run python docs/gen_reference.py"


def test_yaml_reference_has_every_stage_term_and_strategy_with_a_meaning():
    from edgekd.distill.base import LOSSES
    from edgekd.distill.strategies.base import STRATEGIES
    from edgekd.stages import STAGES

    text = _generator().yaml_reference()
    for name in STAGES.names():
        for task in STAGES.get(name).forms:
            assert f"`stage: {name}`" + ("" if task == "image-classification" else f" (task: {task})") in text
    for kind in [*LOSSES.names(), *STRATEGIES.names()]:
        assert f"`kind: {kind}`" in text
    rows = [r for r in text.splitlines() if r.startswith("| `")]
    blank = [r for r in rows if r.rstrip().endswith("|  |") and "`kind`" not in r]
    assert len(rows) > 150 and blank == [], blank[:5]


def test_cli_reference_lists_every_command():
    from edgekd.cli import app

    text = _generator().cli_reference()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"## `edgekd {name}`" in text


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "yaml" / "index.html").is_file()

"""The shipped templates — pipelines (``pipelines/*.yaml``, ``pipelines/methods/*.yaml``) and device profiles
(``devices/*.yaml``) — found in the source tree or, after ``pip install edgekd``, inside the package
(``edgekd/_pipelines``, ``edgekd/_devices``), and copied out for editing: ``edgekd init``, like torchtune's
``tune cp``.

No template holds a path relative to its own folder (data, checkpoints and profiles are named, or relative to where
``edgekd run`` is started), so a copy works wherever it is put; ``tests/test_templates.py`` validates every copy.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgekd.core.errors import EdgekdError

DEFAULT = "mobile_vision"


@dataclass(frozen=True)
class Template:
    name: str  # mobile_vision, methods/attention, raspberry-pi-4
    kind: str  # pipeline | device
    path: Path

    @property
    def source(self) -> str:
        """Where the file lives in the repository, as its own header comments name it."""
        return f"pipelines/{self.name}.yaml" if self.kind == "pipeline" else f"devices/{self.name}.yaml"

    def description(self) -> str:
        return header_line(self.path.read_text(encoding="utf-8"))


def pipelines_dir() -> Path:
    """``edgekd/_pipelines`` in an installed wheel, else ``pipelines/`` next to the package (source tree)."""
    here = Path(__file__).resolve().parents[1]
    for cand in (here / "_pipelines", here.parent / "pipelines"):
        if cand.is_dir():
            return cand
    raise EdgekdError("cannot find edgekd's shipped pipelines (pipelines/*.yaml); reinstall edgekd")


def templates() -> list[Template]:
    """Every template: the main pipelines, the method pipelines, then the device profiles."""
    from edgekd.edge.profiles import profiles_dir

    root = pipelines_dir()
    found = [Template(p.stem, "pipeline", p) for p in sorted(root.glob("*.yaml"))]
    found += [Template(f"methods/{p.stem}", "pipeline", p) for p in sorted(root.glob("methods/*.yaml"))]
    found += [Template(p.stem, "device", p) for p in sorted(profiles_dir().glob("*.yaml"), key=lambda p: p.stem)]
    return found


def header_line(text: str, width: int = 110) -> str:
    """The first sentence of a YAML file's opening comment block, cut to ``width`` characters."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words = line.lstrip("#").strip()
        if not words:
            if lines:
                break
            continue
        lines.append(words)
    joined = re.sub(r"^edgekd [\w-]+ pipeline: ", "", " ".join(lines))
    first = re.match(r"(.+?(?<!\bal)(?<!e\.g)(?<!i\.e)[.!?])(\s|$)", joined)  # "et al." ends no sentence
    out = first.group(1) if first else joined
    return out if len(out) <= width else out[: out.rfind(" ", 0, width - 1)].rstrip(",;:") + " …"


def find(name: str) -> Template:
    """A template by name (``mobile_vision``, ``methods/attention`` or just ``attention``, ``raspberry-pi-4``)."""
    known = templates()
    name = name.removesuffix(".yaml").removesuffix(".yml").removeprefix("pipelines/").removeprefix("devices/")
    by_name = {t.name: t for t in known}
    if name in by_name:
        return by_name[name]
    bare = [t for t in known if t.name.rsplit("/", 1)[-1] == name]
    if len(bare) == 1:
        return bare[0]
    names = [t.name.rsplit("/", 1)[-1] for t in known] + list(by_name)
    close = [n for n in names if n.startswith(name)] or difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise EdgekdError(f"no template named '{name}'; {hint}`edgekd templates` lists them")


def destination(template: Template, dest: Path) -> Path:
    """``dest`` itself when it names a .yaml file, else ``dest/<template file name>``."""
    return dest if dest.suffix in (".yaml", ".yml") else dest / template.path.name


def copy_template(name: str, dest: str | Path = ".", force: bool = False) -> tuple[Template, Path]:
    """Copy a template out for editing; an existing file is only replaced with ``force``."""
    from edgekd.core.fsutil import atomic_write_text

    template = find(name)
    target = destination(template, Path(dest).expanduser())
    if (target.exists() or target.is_symlink()) and not force:
        raise EdgekdError(f"{target} already exists; add --force to replace it, or give another folder or file name")
    if target.is_dir():
        raise EdgekdError(f"{target} is a folder; give a file name ending in .yaml or another folder")
    text = template.path.read_text(encoding="utf-8")
    shown = os.path.relpath(target) if not os.path.relpath(target).startswith("..") else str(target)
    # the comments' own commands ("edgekd run pipelines/x.yaml") now name the copy
    text = "\n".join(
        ln.replace(template.source, shown) if ln.lstrip().startswith("#") else ln for ln in text.split("\n")
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)  # a new file renamed into place: a link found there is replaced, not followed
    except OSError as exc:
        raise EdgekdError(f"cannot write {target}: {exc.strerror or exc}") from None
    return template, target

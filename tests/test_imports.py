"""The package's import structure: no module imports in a circle, no library package imports a stage, and every
module imports on its own.

Run as a script to print the circles and the arrows that tie them (``python tests/test_imports.py``). Every import
counts, at the top of a file or inside a function: a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgekd"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the edgekd modules it imports. ``from pkg import sub`` is an arrow to ``pkg.sub`` only (a package's
    ``__init__`` that only hands names on would otherwise tie every submodule to its siblings)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                found = resolve(target)
                if found and found != mod and found.split(".")[0] == "edgekd":
                    graph[mod].add(found)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_module_imports_in_a_circle():
    graph = import_graph()
    assert len(graph) > 100  # the walk found the package
    assert circles(graph) == []


def test_circles_are_found():
    """The detector itself: a two-module loop and a three-module loop, beside a module outside them."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}, "f": set()}
    assert sorted(circles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_library_packages_import_no_stage():
    """Stages are the top of the house: they compose the library; nothing below them reaches back up."""
    upward = {"edgekd.stages", "edgekd.core.pipeline", "edgekd.core.loader", "edgekd.cli", "edgekd.api"}
    allowed = (
        "edgekd.stages",
        "edgekd.cli",
        "edgekd.api",
        "edgekd.__main__",
        "edgekd.core.pipeline",
        "edgekd.core.loader",
    )
    bad = [
        f"{mod} -> {dep}"
        for mod, deps in import_graph().items()
        if not mod.startswith(allowed)
        for dep in deps
        if any(dep == u or dep.startswith(u + ".") for u in upward)
    ]
    assert bad == []


def test_the_schema_is_a_leaf():
    """edgekd.core.config (every stage's config builds on it) imports nothing of edgekd but errors, names and models'
    registry (for "did you mean" on zoo names)."""
    assert import_graph()["edgekd.core.config"] <= {"edgekd.core.rundir", "edgekd.models", "edgekd.models.registry"}


def test_every_module_imports_on_its_own():
    """Each module imported first, with no other edgekd module loaded before it (third-party libraries stay loaded,
    so this takes seconds, not one interpreter per module)."""
    code = (
        "import importlib, sys\n"
        f"names = {sorted(m for m in modules() if not m.endswith('__main__'))!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'edgekd' or m.startswith('edgekd.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ""


if __name__ == "__main__":
    g = import_graph()
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports between them")
    for comp in circles(g):
        print(f"circle of {len(comp)}: {', '.join(comp)}")
        for a in comp:
            for b in sorted(g[a] & set(comp)):
                print(f"    {a} -> {b}")


def test_one_stage_set_for_every_task():
    """stages/ holds the nine stages, each with its forms per task; no second set beside it."""
    names = sorted(p.stem for p in (PACKAGE / "stages").glob("*.py") if p.stem != "__init__")
    assert names == sorted(
        ["data", "teacher", "distill", "prune", "qat", "export_onnx", "convert_tflite", "benchmark", "report"]
    )

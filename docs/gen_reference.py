"""Generate the reference pages from the code: the YAML keys from the pydantic models (every stage, loss term and
strategy found through its registry) and the CLI from the typer app; and the home page from the README. mkdocs runs
it as a hook before each build (``hooks:`` in mkdocs.yml); ``python docs/gen_reference.py`` writes the same pages
without mkdocs.

Nothing here is hand-written reference: a field added to a config class appears on the next build, with the
``description`` its ``Field`` gives. The reference pages are committed too (readable without a build);
tests/test_docs.py fails when they differ from what this script writes.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

OUT = Path(__file__).resolve().parent / "reference"


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`" if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple, set):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if typing.get_origin(annotation) is typing.Annotated:
        return _type_name(args[0])
    if isinstance(annotation, type):
        return (
            annotation.__name__
            if not issubclass(annotation, BaseModel)
            else f"[{annotation.__name__}](#{_anchor(annotation)})"
        )
    return str(annotation).replace("typing.", "")


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(defaults below)"
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return f"`{text}`" if len(text) < 60 else "(long; see the code)"


def _nested(annotation) -> list[type[BaseModel]]:
    """The pydantic models a field's type names, through unions, lists and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested(arg)]


def _table(model: type[BaseModel], skip: set[str] = frozenset()) -> tuple[list[str], list[type[BaseModel]]]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[type[BaseModel]] = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        key = field.alias or name
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        nested += _nested(field.annotation)
    return lines, nested


def _section(title: str, model: type[BaseModel], intro: str = "", skip: set[str] = frozenset()) -> tuple[str, list]:
    rows, nested = _table(model, skip)
    text = [f"### {title} {{ #{_anchor(model)} }}", ""]
    if intro:
        text += [intro, ""]
    return "\n".join(text + rows + [""]), nested


def yaml_reference() -> str:
    from edgekd.core.config import DATA_CONFIGS, IMAGE, PipelineConfig, StageConfig
    from edgekd.distill.base import LOSSES
    from edgekd.distill.strategies.base import STRATEGIES
    from edgekd.stages import STAGES

    out = [
        "# YAML reference",
        "",
        "Generated from the pydantic models by `docs/gen_reference.py` at each docs build: every key a pipeline file",
        "accepts, its type, default and meaning. Unknown keys are errors, reported at their YAML line with the closest",
        "allowed key. How the pieces fit together is in [Pipeline files](../guide/pipelines.md).",
        "",
        "## The pipeline",
        "",
    ]
    seen: set[type] = set()
    pending: list[type[BaseModel]] = []

    def add(title: str, model: type[BaseModel], intro: str = "", skip: set[str] = frozenset()) -> None:
        """One section for ``model``; the blocks its fields name follow under "Nested blocks"."""
        text, nested = _section(title, model, intro, skip)
        out.append(text)
        seen.add(model)
        pending.extend(nested)

    add("Top level", PipelineConfig, "A pipeline file is one mapping with these keys.")
    out += [
        "## Stages",
        "",
        "Every stage also takes `stage` (its kind, below), `name` (names its output folder; default:",
        "the kind) and `enabled` (default `true`).",
        "",
    ]
    common = set(StageConfig.model_fields)
    for name in STAGES.names():
        for task, stage in STAGES.get(name).forms.items():
            doc = (stage.doc or "").strip().splitlines()[0] if stage.doc else ""
            title = f"`stage: {name}`" + ("" if task == IMAGE else f" (task: {task})")
            add(title, stage.config_cls, doc, skip=common)
    out += ["## The data block of each task", ""]
    for task, kind in DATA_CONFIGS.items():
        add(f"`data:` (task: {task})", kind, (kind.__doc__ or "").strip().replace("\n", " "))
    out += ["## Distillation loss terms", "", "Entries of a distill stage's `terms` list, chosen by `kind`.", ""]
    for kind in LOSSES.names():
        add(f"`kind: {kind}`", LOSSES.get(kind).config_cls)
    out += ["## Distillation strategies", "", "A distill stage's `strategy`, chosen by `kind`.", ""]
    for kind in STRATEGIES.names():
        add(f"`kind: {kind}`", STRATEGIES.get(kind).config_cls)
    out += ["## Nested blocks", ""]
    while pending:
        model = pending.pop(0)
        if model not in seen:
            add(model.__name__, model, (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))
    return "\n".join(out).rstrip() + "\n"


def cli_reference() -> str:
    import click
    import typer

    from edgekd.cli import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="edgekd")
    out = ["# CLI reference", "", "Generated from the typer app by `docs/gen_reference.py` at each docs build.", ""]
    out += [(group.help or "").strip(), "", "| command | what it does |", "|---|---|"]
    for name in group.list_commands(ctx):
        short = (group.get_command(ctx, name).help or "").strip().split("\n")[0]
        out.append(f"| [`edgekd {name}`](#edgekd-{name}) | {short} |")
    out += ["", (group.epilog or "").strip(), ""]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        sub = click.Context(cmd, info_name=name, parent=ctx)
        out += [f"## `edgekd {name}`", "", (cmd.help or "").strip(), "", "| argument / option | default | meaning |"]
        out += ["|---|---|---|"]
        for param in cmd.get_params(sub):
            if param.name == "help":
                continue
            names = " / ".join(f"`{o}`" for o in (param.opts + param.secondary_opts)) or f"`{param.name}`"
            if param.param_type_name == "argument":
                names = f"`{param.name.upper()}`"
            default = "" if param.default in (None, False, ()) or param.required else f"`{param.default}`"
            if param.required:
                default = "**required**"
            meaning = (getattr(param, "help", "") or "").replace("|", "\\|")
            out.append(f"| {names} | {default} | {meaning} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def home_page() -> str:
    """docs/index.md is the README with its links made relative to docs/ (one text, two places to read it)."""
    readme = (OUT.parents[1] / "README.md").read_text(encoding="utf-8")
    return readme.replace("](docs/", "](")


def pages() -> dict[str, str]:
    """Page path under docs/ -> its generated text."""
    return {"reference/yaml.md": yaml_reference(), "reference/cli.md": cli_reference(), "index.md": home_page()}


def write_pages(docs: Path = OUT.parent) -> list[Path]:
    written = []
    for name, text in pages().items():
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def on_pre_build(config, **kwargs) -> None:  # mkdocs hook
    write_pages(Path(config["docs_dir"]))


if __name__ == "__main__":
    for p in write_pages():
        print(p)

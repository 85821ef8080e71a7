"""Errors at their YAML path and line: pydantic errors turned into ``file:line: path: message`` with a "did you mean"
for unknown keys, ``--set`` overrides, and bounded YAML reading (edgekd.core.yamlfile: safe_load's constructors, no
tags that build objects, bounded size and alias expansion). Used for pipelines and device profiles alike.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.core.config import (
    PipelineConfig,
)
from edgekd.core.errors import ConfigError
from edgekd.core.yamlfile import load_text, read_text


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at ``loc``, or of its closest existing parent."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
            if node is None:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return line
    return node.start_mark.line + 1 if node is not None else line


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field can hold, through Optional, unions, Annotated, lists and dicts."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _fields(models: list[type[BaseModel]]) -> dict[str, Any]:
    """Field name (or alias, as written in YAML) -> field, over every model."""
    return {(f.alias or n): f for m in models for n, f in m.model_fields.items()}


def _models_at(model: type[BaseModel] | None, loc: tuple) -> list[type[BaseModel]]:
    """The models a YAML location can hold, walking ``loc`` down from ``model``; [] where it leaves config models."""
    models = [model] if model is not None else []
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: _models_in already gave the item types
        field = _fields(models).get(part)
        if field is not None:
            models = _models_in(field.annotation)
            continue
        tagged = [m for m in models if part in get_args(getattr(m.model_fields.get("kind"), "annotation", None))]
        if not tagged:  # pydantic puts a union member's tag in the location (losses[0].feature.weight)
            return []
        models = tagged
    return models


def suggest_key(model: type[BaseModel] | None, parent: tuple, key: str) -> str | None:
    """The key meant instead of an unknown ``key`` at ``parent``: a close sibling (``modle`` -> ``model``), else the
    same name one or two levels down (``epochs`` -> ``train.epochs``); as a dotted path from ``parent``."""
    here = _models_at(model, parent)
    names = [n for n in _fields(here) if n not in ("stage", "kind")]
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    if close:
        return close[0]
    level = [((n,), f) for n, f in _fields(here).items()]
    for _ in range(2):
        deeper = [((*path, n), f) for path, field in level for n, f in _fields(_models_in(field.annotation)).items()]
        found = [path for path, _ in deeper if path[-1] == key]
        found = found or [p for p, _ in deeper if difflib.get_close_matches(str(key), [p[-1]], n=1, cutoff=0.8)]
        if found:
            return ".".join(found[0])
        level = deeper
    return None


@dataclass
class Override:
    """Where one ``--set`` landed in the document, so an error there names the override, not a YAML line."""

    item: str  # as typed: teacher.epochs=1
    typed: list[str]  # the key's parts as typed: [teacher, epochs]
    path: tuple  # the document path it set: (stages, 0, epochs)
    created: int  # index in ``path`` of the first key the override added (len(path) - 1: it replaced a value)

    def covers(self, loc: tuple) -> bool:
        """The problem at ``loc`` is inside what this override wrote."""
        n = len(loc)
        return (loc[: len(self.path)] == self.path) or (self.path[:n] == loc and n > self.created)

    def dotted(self, loc: tuple, rest: str = "") -> str:
        """``loc`` (a prefix of ``path``, or ``path`` itself) in the override's own dotted form, plus ``rest``."""
        keep = len(self.typed) - (len(self.path) - min(len(loc), len(self.path)))
        return ".".join([*self.typed[:keep], *([rest] if rest else [])])


def _place(loc: tuple, doc: Any, ov: Override) -> str:
    if len(loc) == 2 and loc[0] == "stages" and isinstance(loc[1], int):
        stage = doc["stages"][loc[1]] if isinstance(doc, dict) else {}
        return f"in stage '{stage.get('name') or stage.get('stage')}'" if isinstance(stage, dict) else "in a stage"
    return f"in '{ov.dotted(loc)}'" if loc else "at the top level"


def _errors_from(
    exc: ValidationError,
    prefix: tuple,
    root: yaml.Node | None,
    where: str,
    model: type[BaseModel] | None = None,
    overrides: list[Override] | None = None,
    doc: Any = None,
) -> list[str]:
    """One line per problem: at its YAML path and line, or at the ``--set`` that caused it; an unknown key comes
    with the closest allowed one when there is one (``model``: the class validated at ``prefix``)."""
    msgs = []
    for err in exc.errors():
        sub = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = prefix + sub
        msg = err["msg"].removeprefix("Value error, ")
        ov = next((o for o in reversed(overrides or []) if o.covers(loc)), None)
        if err["type"] == "extra_forbidden":
            hint = suggest_key(model, sub[:-1], str(sub[-1])) if sub else None
            if ov is not None:
                meant = f"; did you mean '{ov.dotted(loc[:-1], hint)}'?" if hint else ""
                msgs.append(f"--set {ov.item}: unknown key '{loc[-1]}' {_place(loc[:-1], doc, ov)}{meant}")
                continue
            msg = "unknown key" + (f"; did you mean '{hint}'?" if hint else "")
        if ov is not None:
            msgs.append(f"--set {ov.item}: {msg}")
            continue
        line = _line_of(root, loc)
        at = f"{where}:{line}: " if line else f"{where}: "
        after = next((o for o in overrides or [] if o.path[: len(loc)] == loc), None)
        msgs.append(f"{at}{_fmt_loc(loc)}: {msg}" + (f" (with --set {after.item})" if after else ""))
    return msgs


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}' must look like dotted.key=value")
    key, _, raw = item.partition("=")
    try:
        value = load_text(raw, f"--set {key.strip()}", lines=False)[0] if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}: YAML nested too deeply") from None
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set '{item}': empty key")
    return parts, value


def apply_overrides(doc: dict, overrides: list[str], landed: list[Override] | None = None) -> dict:
    """Apply ``dotted.key=value`` overrides; the first part may be a top-level key or a stage's name. ``landed``
    receives where each one went (for error messages)."""
    for item in overrides:
        parts, value = parse_override(item)
        typed = list(parts)
        target: Any = doc
        head = parts[0]
        path: tuple = ()
        if head not in doc and isinstance(doc.get("stages"), list):
            ids = [(s.get("name") or s.get("stage")) if isinstance(s, dict) else None for s in doc["stages"]]
            index = next((i for i, sid in enumerate(ids) if sid == head), None)
            if index is None:
                known = [str(sid) for sid in ids if sid is not None]
                close = difflib.get_close_matches(head, [*known, *PipelineConfig.model_fields], n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f" (stages: {', '.join(known)})"
                raise ConfigError(f"--set '{item}': '{head}' is neither a top-level key nor a stage name{hint}")
            target, path, parts = doc["stages"][index], ("stages", index), parts[1:]
        created = None
        for p in parts[:-1]:
            if isinstance(target, list) and p.isdigit() and int(p) < len(target):
                target, path = target[int(p)], (*path, int(p))
                continue
            if not isinstance(target, dict):
                raise ConfigError(f"--set '{item}': '{p}' is not a mapping")
            if p not in target and created is None:
                created = len(path)
            target, path = target.setdefault(p, {}), (*path, p)
        if not isinstance(target, dict) or not parts:
            raise ConfigError(f"--set '{item}': cannot set a value there")
        target[parts[-1]] = value
        path = (*path, parts[-1])
        if landed is not None:
            landed.append(Override(item, typed, path, len(path) - 1 if created is None else created))
    return doc


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    if not path.is_file():
        raise ConfigError(f"pipeline file '{path}' does not exist")
    return parse_yaml_text(read_text(path, "pipeline file"), str(path))


def parse_yaml_text(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML within edgekd's limits (edgekd.core.yamlfile): (document, root node for error lines)."""
    try:
        doc, root = load_text(text, where)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}{line}: malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    return doc, root

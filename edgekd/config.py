"""Pipeline configuration: YAML -> pydantic models, one typed config per stage, errors at their YAML path and line.

YAML is read with safe_load's constructors (no tags that build objects), bounded in size and alias expansion
(edgekd.safe_yaml). Every stage's config class lives with its stage and is found through the stage registry, so
adding a stage never touches this file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekd.errors import ConfigError, EdgekdError
from edgekd.rundir import SAFE_NAME
from edgekd.safe_yaml import load_text, read_text


class Strict(BaseModel):
    """Base for every config block: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


ADDED_LATER = "added_later"


def added_later(*args: Any, **kwargs: Any) -> Any:
    """A ``Field`` for an option added after stages were already cached: at its default it stays out of cache keys
    (:func:`key_dump`), so runs and resume checkpoints made before the option existed stay valid."""
    return Field(*args, json_schema_extra={ADDED_LATER: True}, **kwargs)


def _later_defaults(value: Any) -> Any:
    """A pydantic ``exclude`` tree of the ``added_later`` fields that hold their default, through nested models,
    lists and dicts of models; None where there is nothing to leave out."""
    if isinstance(value, BaseModel):
        out = {}
        for name, field in type(value).model_fields.items():
            v = getattr(value, name)
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get(ADDED_LATER) and v == field.get_default(call_default_factory=True):
                out[name] = True
            elif (sub := _later_defaults(v)) is not None:
                out[name] = sub
        return out or None
    if isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    out = {k: sub for k, v in items if (sub := _later_defaults(v)) is not None}
    return out or None


def key_dump(cfg: BaseModel, exclude: set[str] = frozenset()) -> dict:
    """The config as its cache key hashes it: ``model_dump(mode="json")`` without ``exclude`` (top-level names) and
    without the ``added_later`` fields that hold their default."""
    tree = _later_defaults(cfg) or {}
    tree.update(dict.fromkeys(exclude, True))
    return cfg.model_dump(mode="json", exclude=tree)


class ModelSpec(Strict):
    """A model from the zoo (``name``) or the user's own class (``import: package.module:Class``)."""

    name: str | None = None
    import_: str | None = Field(None, alias="import")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.name is None) == (self.import_ is None):
            raise ValueError("give exactly one of 'name' (a zoo model) or 'import' (package.module:Class)")
        if self.name is not None:
            import edgekd.models.zoo  # noqa: F401
            from edgekd.models.registry import MODELS

            if self.name not in MODELS:
                raise ValueError(MODELS.unknown_message(self.name))
        return self

    def as_dict(self) -> dict:
        return {"name": self.name, "import": self.import_, "kwargs": self.kwargs}


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0, le=10)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int = Field(10, ge=1, description="epochs between lr drops (schedule: step)")
    gamma: float = Field(0.1, gt=0, le=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    channels_last: bool = Field(
        False, description="train in channels-last memory layout (faster convolutions on CPU); saved weights unchanged"
    )


class AugmentConfig(Strict):
    enabled: bool = True
    max_shift: float = Field(2.0, ge=0, le=64, description="pixels")
    max_rotate_deg: float = Field(10.0, ge=0, le=180)


class DataConfig(Strict):
    # none: no image data stage; the pipeline's own stages bring their data (text pipelines: text_data)
    source: Literal["digits", "folder", "npz", "none"] = "digits"
    path: str | None = None
    image_size: int = Field(32, ge=4, le=1024)
    channels: Literal[1, 3] | None = None
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    split_seed: int = 0
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    mean: list[float] | None = None
    std: list[float] | None = None
    labels: list[str] | None = None
    on_corrupt: Literal["fail", "skip"] = "fail"

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source in ("folder", "npz") and not self.path:
            raise ValueError(f"data source '{self.source}' needs 'path'")
        if self.source == "folder" and self.channels is None:
            self.channels = 3
        if self.source == "digits" and self.channels not in (None, 1):
            raise ValueError("the digits data set has 1 channel")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("every std value must be > 0")
        return self


class StageConfig(Strict):
    """Fields every stage has. ``name`` defaults to the stage kind and names its output folder."""

    stage: str
    name: str | None = Field(None, pattern=SAFE_NAME, description="names the stage's output folder")
    enabled: bool = True

    @property
    def id(self) -> str:
        return self.name or self.stage


class TrackingConfig(Strict):
    """Experiment tracking (edgekd/tracking.py); not part of any cache key, so turning it on re-runs nothing."""

    backend: Literal["none", "mlflow", "tensorboard"] = "none"
    dir: str | None = Field(None, description="default: <run dir>/mlruns (mlflow) or <run dir>/tensorboard")
    uri: str | None = Field(None, description="mlflow tracking URI (sqlite:///..., http://...); default: file store")
    experiment: str | None = Field(None, description="mlflow experiment name; default: the pipeline name")


class PipelineConfig(Strict):
    name: str = Field("pipeline", pattern=SAFE_NAME, description="names the run folder: runs/<name>")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    output_dir: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    data: DataConfig = Field(default_factory=DataConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    stages: list[Any] = Field(min_length=1)

    def stage(self, stage_id: str) -> StageConfig | None:
        return next((s for s in self.stages if s.id == stage_id), None)


# --------------------------------------------------------------------------- loading


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
    """Parse YAML within edgekd's limits (edgekd.safe_yaml): (document, root node for error lines)."""
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


def validate_document(
    doc: Any, root: yaml.Node | None = None, where: str = "<pipeline>", overrides: list[Override] | None = None
) -> PipelineConfig:
    """Validate a parsed pipeline document; every error found is reported together in one ConfigError (``problems``:
    one line each). ``overrides`` (from :func:`apply_overrides`) make errors they caused name the ``--set``."""
    from edgekd.stages import STAGES

    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a pipeline must be a YAML mapping with a 'stages' list")
    errors: list[str] = []
    try:
        cfg = PipelineConfig.model_validate({**doc, "stages": doc.get("stages") or []})
    except ValidationError as exc:
        errors += _errors_from(exc, (), root, where, PipelineConfig, overrides, doc)
        cfg = None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    stages = []
    raw_stages = doc.get("stages") if isinstance(doc.get("stages"), list) else []
    for i, raw in enumerate(raw_stages):
        if not isinstance(raw, dict) or "stage" not in raw:
            errors.append(
                f"{where}:{_line_of(root, ('stages', i))}: stages[{i}]: each stage needs a 'stage' key "
                f"(one of: {', '.join(STAGES.names())})"
            )
            continue
        if not isinstance(raw["stage"], str) or raw["stage"] not in STAGES:
            errors.append(
                f"{where}:{_line_of(root, ('stages', i, 'stage'))}: stages[{i}].stage: "
                + STAGES.unknown_message(str(raw["stage"]))
            )
            continue
        try:
            stages.append(STAGES.get(raw["stage"]).config_cls.model_validate(raw))
        except ValidationError as exc:
            cls = STAGES.get(raw["stage"]).config_cls
            errors += _errors_from(exc, ("stages", i), root, where, cls, overrides, doc)
        except RecursionError:
            raise ConfigError(f"{where}: YAML nested too deeply") from None
    ids = [s.id for s in stages]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        errors.append(f"{where}: stages: names must be unique (give 'name:' to repeated stages): {', '.join(dupes)}")
    if not errors and cfg is not None:
        cfg.stages = stages
        errors += _stage_checks(cfg, root, where)
    if errors:
        raise ConfigError(errors[0]) if len(errors) == 1 else ConfigError(f"{len(errors)} errors in {where}:", errors)
    assert cfg is not None
    return cfg


def _stage_checks(cfg: PipelineConfig, root, where: str) -> list[str]:
    """Each enabled stage's ``check`` (models built, traced, dry-run), one thread: batch-1 forwards of tiny models
    gain nothing from more, and on a busy machine spare threads only wait for cores (3x slower validate)."""
    import torch

    from edgekd.console import step
    from edgekd.stages import STAGES

    errors: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, st in enumerate(cfg.stages):
            check = STAGES.get(st.stage).check
            if check is None or not st.enabled:
                continue
            with step(f"checking stage '{st.id}'"):
                try:
                    found = check(st, cfg)
                except EdgekdError as exc:
                    found = [str(exc)]
            errors += [f"{where}:{_line_of(root, ('stages', i))}: stages[{i}] ({st.id}): {m}" for m in found]
    finally:
        torch.set_num_threads(threads)
    return errors


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read, override and validate a pipeline YAML file."""
    path = Path(path)
    doc, root = load_yaml(path)
    if overrides:
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a pipeline must be a YAML mapping")
        landed: list[Override] = []
        doc = apply_overrides(doc, overrides, landed)
        return validate_document(doc, root, str(path), landed)
    return validate_document(doc, root, str(path))

"""What a stage is: a typed config, the artifacts it reads, and a function from those to new artifacts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgekd.core.artifacts import Artifact
from edgekd.core.config import IMAGE, PipelineConfig, StageConfig
from edgekd.core.errors import ConfigError, StageError
from edgekd.core.registry import Registry


@dataclass
class StageContext:
    """What a stage may use besides its inputs: where to write, the seed, the device, the pipeline config."""

    out_dir: Path
    pipeline: PipelineConfig
    stage_id: str
    resume_dir: Path | None = None  # survives a crash; the runner deletes it once the stage has finished
    cache_key: str = ""  # this stage's cache key (read-only): exported files record it as their pipeline hash
    # content-keyed data that outlives a stage run and is shared by later runs in this run directory (teacher cache)
    cache_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    # the stages before this one in this run: name, stage, status (ran/cached/disabled), seconds (as first run)
    earlier: list[dict] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.pipeline.seed

    def device(self) -> str:
        import torch

        want = self.pipeline.device
        if want == "cuda" and not torch.cuda.is_available():
            raise StageError(self.stage_id, "device: cuda was asked for but torch sees no CUDA device")
        return "cuda" if want in ("cuda", "auto") and torch.cuda.is_available() else "cpu"

    def checkpoint(self, name: str) -> Path | None:
        """Where a training loop keeps its per-epoch state so that a killed run resumes instead of starting over."""
        if self.resume_dir is None:
            return None
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        return self.resume_dir / f"{name}.ckpt"

    def note(self, msg: str) -> None:
        self.notes.append(msg)


InputsFn = Callable[[Any, dict[str, Artifact]], list[str]]
RunFn = Callable[[Any, StageContext, dict[str, Artifact]], list[Artifact]]
# check(cfg, pipeline) -> error messages; runs at validate time, after every stage's own config validated, for
# checks that need the rest of the pipeline (layer names need the data's channels and the teacher's spec)
CheckFn = Callable[[Any, PipelineConfig], list[str]]


@dataclass(frozen=True)
class Stage:
    name: str
    config_cls: type[StageConfig]
    run: RunFn
    inputs: InputsFn
    libraries: tuple[str, ...] = ()  # distributions whose versions go into the cache key
    doc: str = ""
    check: CheckFn | None = None
    # runs on every rank under torchrun (training stages, DistributedDataParallel inside ``fit``); other stages run
    # on rank 0 only while the other ranks wait for its outputs (edgekd.training.distributed)
    distributed: bool = False
    # False for stages whose outputs cannot depend on the pipeline seed (the text corpus has its own split_seed,
    # the teacher's embeddings are a deterministic forward pass): their cache key leaves the seed out, so runs of
    # several seeds share them
    seeded: bool = True
    # raised when the stage's own code changes what it writes for the same config and inputs (a QAT graph annotated
    # differently): the cache key holds it only when non-zero, so the keys of every other stage stay valid
    revision: int = 0


@dataclass
class StageForms:
    """One stage (``distill``) and its form for each task it serves: the same name in every pipeline, a config and
    a run function per task (image classification, text embedding)."""

    name: str
    forms: dict[str, Stage] = field(default_factory=dict)

    def form(self, task: str) -> Stage:
        if task not in self.forms:
            raise ConfigError(f"stage '{self.name}' has no form for task '{task}' (it serves: {', '.join(self.forms)})")
        return self.forms[task]


STAGES: Registry[StageForms] = Registry("stage")


def register_stage(
    name: str,
    config_cls: type[StageConfig],
    inputs: InputsFn,
    libraries: tuple[str, ...] = (),
    check: CheckFn | None = None,
    distributed: bool = False,
    seeded: bool = True,
    task: str = IMAGE,
    revision: int = 0,
):
    """Register ``run(cfg, ctx, inputs) -> list[Artifact]`` as the ``task`` form of stage ``name``."""

    def deco(fn: RunFn) -> RunFn:
        doc = (fn.__doc__ or "").strip()
        forms = STAGES.get(name) if name in STAGES else STAGES.register(name)(StageForms(name))
        if task in forms.forms:
            raise ValueError(f"stage '{name}' registered twice for task '{task}'")
        forms.forms[task] = Stage(name, config_cls, fn, inputs, libraries, doc, check, distributed, seeded,
                                   revision)  # fmt: skip
        return fn

    return deco


def require(store: dict[str, Artifact], stage: str, *names: str) -> list[str]:
    """Check that every artifact a stage needs was produced by an earlier stage."""
    missing = [n for n in names if n not in store]
    if missing:
        raise StageError(
            stage,
            f"needs artifact(s) {', '.join(missing)}, which no earlier enabled stage produced "
            f"(available: {', '.join(sorted(store)) or 'none'})",
        )
    return list(names)


def model_specs(cfg: StageConfig) -> list:
    """Every ModelSpec a stage config holds, also deeper than the stage itself (a strategy's peers)."""
    from edgekd.core.config import ModelSpec

    specs: list[ModelSpec] = []
    stack: list[Any] = [cfg]
    while stack:
        node = stack.pop()
        if isinstance(node, ModelSpec):
            specs.append(node)
        elif isinstance(node, BaseModel):
            stack.extend(getattr(node, name) for name in type(node).model_fields)
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return specs


def import_model_errors(cfg: StageConfig, pipeline: PipelineConfig) -> list[str]:
    """Build every user model (``import: pkg.mod:Class``) and library model (``timm:``, ``torchvision:``) a stage
    config names, as validate builds the zoo's, and check that every ``pretrained`` file exists.

    A missing module, a syntax error, an exception at import or in the constructor, a return value that is not a
    module, an unknown library model, a missing weights file: each is one message naming it, at validate time instead
    of after earlier stages ran.
    """
    from pathlib import Path

    from edgekd.core.console import step
    from edgekd.core.errors import EdgekdError
    from edgekd.models import build_model

    channels, classes = pipeline.data.model_io()
    errors: list[str] = []
    for spec in model_specs(cfg):
        if spec.pretrained is not None and not Path(spec.pretrained).expanduser().is_file():
            errors.append(f"pretrained weights '{spec.pretrained}' do not exist (edgekd never downloads weights)")
        label = spec.import_ or (f"timm:{spec.timm}" if spec.timm else f"torchvision:{spec.torchvision}")
        if spec.import_ is None and spec.timm is None and spec.torchvision is None:
            continue
        try:
            with step(f"importing and building {label}"):
                build_model(spec.as_dict(), channels, classes, pretrained=False)
        except EdgekdError as exc:
            errors.append(str(exc))
    return list(dict.fromkeys(errors))


def model_key_facts(cfg: StageConfig) -> dict[str, str]:
    """What a stage's outputs depend on beyond its config: the content of the files it reads (``key_files``, each
    ``pretrained`` file) and the version of timm/torchvision a library model is built with (a new release may change
    an architecture). Empty for a stage that reads no such file, so its cache key stays as it was."""
    from pathlib import Path

    from edgekd.core.fsutil import file_sha256
    from edgekd.core.versions import library_versions

    facts: dict[str, str] = {}
    for name in cfg.key_files():
        if Path(name).expanduser().is_file():
            facts[f"file:{name}"] = file_sha256(Path(name).expanduser())
    for spec in model_specs(cfg):
        if spec.pretrained is not None and Path(spec.pretrained).expanduser().is_file():
            facts[f"pretrained:{spec.pretrained}"] = file_sha256(Path(spec.pretrained).expanduser())
        for lib in ("timm", "torchvision"):
            if getattr(spec, lib) is not None:
                facts[lib] = library_versions((lib,))[lib]
    return facts

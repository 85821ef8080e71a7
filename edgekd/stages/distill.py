"""distill: teach a small student from one or more teachers (or none: self-, online and data-free methods).

The objective is the Hinton base, ``alpha`` * soft targets at ``temperature`` + (1 - ``alpha``) * hard labels, plus
any weighted ``losses`` terms (features, attention, relations...); ``strategy`` organises training (a fixed teacher,
a cohort, generations...). Methods live in ``edgekd/distill``; this stage only wires them to artifacts.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import torch.nn.functional as F
from pydantic import Field, model_validator

from edgekd.core import console
from edgekd.core.config import NOT_MINE, ModelSpec, PipelineConfig, StageConfig, TrainConfig
from edgekd.data import SplitData
from edgekd.distill import LOSSES, STRATEGIES
from edgekd.distill.chain import teacher_chain_errors
from edgekd.distill.checks import term_errors
from edgekd.distill.env import DistillEnv
from edgekd.distill.objective import DistillModule
from edgekd.distill.purify import PurifyConfig
from edgekd.distill.taps import check_layers
from edgekd.distill.teacher_cache import TeacherCacheConfig, cache_for
from edgekd.models import build_model
from edgekd.models.io import load_frozen_model, save_torch_model
from edgekd.stages.base import import_model_errors, register_stage, require
from edgekd.training.loop import accuracy


def _union(configs: list[type]):
    """A pydantic union discriminated by ``kind`` over every registered config class."""
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator="kind")]  # noqa: UP007 (built at run time)


TermUnion = _union([LOSSES.get(k).config_cls for k in LOSSES.names()])
StrategyUnion = _union([STRATEGIES.get(k).config_cls for k in STRATEGIES.names()])


class DistillConfig(StageConfig):
    student: ModelSpec = Field(
        default_factory=lambda: ModelSpec(name="mobilenetv2_student"),
        description="the student model: {name: <zoo>} or {import: pkg.module:Class}, plus kwargs",
    )
    teachers: list[str] = Field(["teacher"], description="torch artifacts that teach (several: multi-teacher)")
    output: str = Field("student", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="name of the distilled model")
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature of the soft targets (Hinton)")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target term; 1 - alpha on hard labels")
    losses: list[TermUnion] = Field(default_factory=list, description="extra weighted terms added to the base")  # type: ignore[valid-type]
    teacher_weighting: Literal["fixed", "confidence"] = Field(
        "fixed", description="several teachers: fixed weights, or per sample by each teacher's confidence"
    )
    teacher_weights: list[float] | None = Field(None, description="one weight per teacher (default: equal)")
    purify: PurifyConfig | None = Field(None, description="filter wrong / unconfident teacher knowledge")
    strategy: StrategyUnion = Field(
        default_factory=lambda: STRATEGIES.get("standard").config_cls(),
        description="how the student is trained: standard, born_again, byot, online or data_free",
    )  # type: ignore[valid-type]
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=20), description="training recipe (epochs, optimiser, schedule)"
    )
    baseline: bool = Field(True, description="also train the same student from scratch (no teacher)")
    teacher_cache: TeacherCacheConfig = Field(
        default_factory=TeacherCacheConfig, description="teacher logits computed once and replayed (FKD)"
    )

    @model_validator(mode="after")
    def _teachers(self) -> DistillConfig:
        if STRATEGIES.get(self.strategy.kind).needs_teacher and not self.teachers:
            raise ValueError(f"strategy '{self.strategy.kind}' needs at least one teacher in 'teachers'")
        if len(set(self.teachers)) != len(self.teachers):
            raise ValueError("teachers: each teacher may be listed once")
        if self.teacher_weights is not None:
            if len(self.teacher_weights) != len(self.teachers):
                raise ValueError(
                    f"teacher_weights has {len(self.teacher_weights)} values for {len(self.teachers)} teachers"
                )
            if min(self.teacher_weights) < 0 or sum(self.teacher_weights) <= 0:
                raise ValueError("teacher_weights must be >= 0 with a positive sum")
        return self

    @property
    def uses_teachers(self) -> bool:
        return STRATEGIES.get(self.strategy.kind).needs_teacher

    @property
    def baseline_name(self) -> str:
        return "baseline" if self.output == "student" else f"{self.output}_baseline"

    def model_spec(self, artifact, spec_before):
        return self.student.as_dict() if artifact in (self.output, self.baseline_name) else NOT_MINE


def _check(cfg: DistillConfig, pipeline: PipelineConfig) -> list[str]:
    """Teachers come from earlier stages, the strategy's own checks pass, layer names exist (before anything trains)."""
    errors = teacher_chain_errors(cfg, pipeline)
    model_errors = import_model_errors(cfg, pipeline)  # user code first: one error per broken import
    if model_errors:
        return errors + model_errors
    strategy_check = STRATEGIES.get(cfg.strategy.kind).check
    if strategy_check is not None and not errors:
        with console.step(f"checking strategy '{cfg.strategy.kind}'"):
            errors += strategy_check(cfg.strategy, cfg, pipeline)
    layers_s = list(dict.fromkeys(n for t in cfg.losses for n in LOSSES.get(t.kind).term_cls(t).student_layers()))
    layers_t = list(dict.fromkeys(n for t in cfg.losses for n in LOSSES.get(t.kind).term_cls(t).teacher_layers()))
    if not layers_s and not layers_t:
        return errors
    channels, classes = pipeline.data.model_io()
    if layers_s:
        with console.step(f"building the student ({cfg.student.name or cfg.student.import_}) to find its layers"):
            errors += check_layers(build_model(cfg.student.as_dict(), channels, classes), layers_s, "the student")
    t_spec = pipeline.spec_of(cfg.teachers[0], cfg) if cfg.teachers and cfg.uses_teachers else None
    if layers_t and t_spec is not None:
        with console.step(f"building teacher '{cfg.teachers[0]}' to find its layers"):
            errors += check_layers(build_model(t_spec, channels, classes), layers_t, f"teacher '{cfg.teachers[0]}'")
    if not errors:  # names are right: now shapes (adapters off, token grids, attention maps) on a dummy batch
        with console.step("running the models on a dummy batch to check the loss terms' layer shapes"):
            errors += term_errors(cfg, pipeline, t_spec)
    return errors


def _inputs(cfg: DistillConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset", *(cfg.teachers if cfg.uses_teachers else []))


@register_stage("distill", DistillConfig, _inputs, check=_check, distributed=True)
def run_distill(cfg: DistillConfig, ctx, inputs) -> list:
    """Distil with the configured strategy; optionally train a scratch baseline with the same recipe."""
    data = SplitData.load(inputs["dataset"].path)
    device = ctx.device()
    teachers = [load_frozen_model(inputs[n], device) for n in cfg.teachers] if cfg.uses_teachers else []
    t_layers = list(dict.fromkeys(n for t in cfg.losses for n in LOSSES.get(t.kind).term_cls(t).teacher_layers()))
    ident = {"teachers": [inputs[n].sha256 for n in cfg.teachers if n in inputs], "data": inputs["dataset"].sha256}
    cache = cache_for(cfg.teacher_cache, teachers, data, ctx.pipeline.data.augment, ctx.seed, device, t_layers,
                      ctx.note, ctx.cache_dir, ident)  # fmt: skip
    env = DistillEnv(cfg, ctx, data, cache.teachers() if cache else teachers, device)

    def save(name: str, model, spec: dict, desc: str, **extra):
        if isinstance(model, DistillModule):  # never happens by design; a guard against exporting adapters
            model = model.student
        model.cpu()
        val = accuracy(model, data, "val")
        ctx.note(f"{desc}: val accuracy {val:.4f}")
        return save_torch_model(name, model, spec, data.meta(), ctx.out_dir / f"{name}.pt",
                                role=name, val_accuracy=val, **extra)  # fmt: skip

    if cfg.baseline:  # so the ETA printed after the first epoch covers the baseline's training too
        console.will_train("baseline (scratch)", cfg.train.epochs)
    result = STRATEGIES.get(cfg.strategy.kind).run(cfg.strategy, env)
    meta = {"method": _method_meta(cfg), "teachers": cfg.teachers if cfg.uses_teachers else []}
    meta.update(temperature=cfg.temperature, alpha=cfg.alpha, **result.meta)
    meta.update(env.teacher_summary())  # purification counts / teacher weights on the training split
    if cache is not None:
        meta["teacher_cache"] = cache.summary()
        ctx.note(f"teacher cache: {cache.summary()}")
    outputs = [save(cfg.output, result.student, cfg.student.as_dict(), f"distill ({cfg.strategy.kind})", **meta)]
    outputs += [save(n, m, spec, n) for n, m, spec in result.extra_models]
    if cfg.baseline:
        student = env.new_student()
        res = env.fit(
            student,
            cfg.baseline_name,
            "baseline (scratch)",
            lambda logits, y, _x: F.cross_entropy(logits, y, label_smoothing=cfg.train.label_smoothing),
        )
        outputs.append(save(cfg.baseline_name, student, cfg.student.as_dict(), "baseline (scratch)",
                            best_epoch=res.best_epoch, history=res.history))  # fmt: skip
    return outputs


def _method_meta(cfg: DistillConfig) -> dict:
    return {
        "strategy": cfg.strategy.model_dump(mode="json"),
        "losses": [t.model_dump(mode="json") for t in cfg.losses],
        **({"purify": cfg.purify.model_dump(mode="json")} if cfg.purify else {}),
        **(
            {"teacher_weighting": cfg.teacher_weighting, "teacher_weights": cfg.teacher_weights}
            if len(cfg.teachers) > 1 or cfg.teacher_weighting != "fixed"
            else {}
        ),
    }

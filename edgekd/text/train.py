"""The distillation loop for sentence-embedding students: read top to bottom.

Pooled terms (cosine, MSE, relational, anchor, neighbors) need only the teacher's embeddings, computed once by the
text ``teacher`` stage and replayed every epoch. Hidden-state terms need the teacher's token states: with only those,
the teacher runs once over the training split before the first epoch and its states are kept (float16, padding
dropped: ~1.8 GB per teacher layer for the shipped 110 k sentences) and replayed like the embeddings; attention terms
make the teacher run live on each batch. Every batch is trimmed to its longest sentence (the models
accept any length up to the maximum); with ``group_by_length`` the batches are drawn from windows of sentences sorted
by length, so a batch pads to ~22 tokens instead of ~58 on the shipped corpus (the batch order stays random). The
epoch with the best validation Spearman is kept.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.core import console
from edgekd.core.fsutil import atomic_write_bytes
from edgekd.text.losses import POOLED, anchor_loss, attention_loss, hidden_loss, neighbor_loss, second_moment
from edgekd.text.metrics import similarity_spearman, topk_overlap
from edgekd.text.teacher import encode


@dataclass
class Split:
    ids: np.ndarray  # (N, L) int64
    mask: np.ndarray  # (N, L) int64
    teacher: np.ndarray  # (N, D) float32, the teacher's embeddings


@dataclass
class LayerPair:
    kind: str  # hidden | attention
    student: int
    teacher: int
    weight: float


@dataclass
class Recipe:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    weights: dict[str, float] = field(default_factory=lambda: {"cosine": 1.0})
    layers: list[LayerPair] = field(default_factory=list)
    val_limit: int = 1000
    group_by_length: bool = True
    bank: int = 4096  # the neighbors term's random bank of training sentences, drawn afresh each step


@dataclass
class Result:
    best_epoch: int
    best_val: dict
    history: list[dict]


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))

    return f


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: bool, window: int = 50) -> list:
    """One epoch's batches (arrays of row indices), in random order; the remainder below a full batch is dropped.

    ``group``: shuffle, cut into windows of ``window`` batches, sort each window by length, cut into batches and
    shuffle the batches, so the sentences of a batch have similar lengths and little padding. The dropped remainder
    (< ``batch_size`` rows) is then the shortest sentences of the last window, a different random window each epoch.
    """
    order = rng.permutation(len(lengths))
    steps = max(1, len(lengths) // batch_size)
    if group:
        span = window * batch_size
        order = np.concatenate(
            [c[np.argsort(-lengths[c], kind="stable")] for c in np.split(order, range(span, len(order), span))]
        )
    out = [order[b * batch_size : (b + 1) * batch_size] for b in range(steps)]
    if group:
        out = [out[i] for i in rng.permutation(len(out))]
    return out


def batch_tensors(split: Split, rows: np.ndarray, lengths: np.ndarray) -> tuple[torch.Tensor, ...]:
    """The batch's token ids and mask trimmed to its longest sentence, and the teacher's embeddings."""
    width = max(int(lengths[rows].max()), 1)
    return (
        torch.from_numpy(split.ids[rows, :width]),
        torch.from_numpy(split.mask[rows, :width]),
        torch.from_numpy(split.teacher[rows]),
    )


class TeacherStates:
    """The teacher's token states of chosen layers for every training sentence, float16, padding dropped.

    Row i's states lie at ``flat[layer][offsets[i] : offsets[i] + lengths[i]]``; ``batch`` pads them back.
    """

    def __init__(self, teacher: nn.Module, split: Split, layers: list[int], batch_size: int = 128):
        lengths = split.mask.sum(1).astype(np.int64)
        self.lengths, self.offsets = lengths, np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.flat: dict[int, np.ndarray] = {}
        order = np.argsort(-lengths, kind="stable")  # similar lengths together: little padding
        with torch.no_grad():
            for b in range(0, len(order), batch_size):
                rows = order[b : b + batch_size]
                n = max(int(lengths[rows].max()), 1)
                _, hidden, _ = teacher.features(
                    torch.from_numpy(split.ids[rows, :n]), torch.from_numpy(split.mask[rows, :n])
                )
                real, where = self._positions(rows, n)
                for k in layers:
                    h = hidden[k].numpy()
                    if k not in self.flat:
                        self.flat[k] = np.empty((int(lengths.sum()), h.shape[-1]), np.float16)
                    self.flat[k][where] = h[real]

    def _positions(self, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """For ``rows`` padded to ``width`` tokens: the mask of real tokens (B, width) and their indices in ``flat``."""
        pos = np.arange(width)
        real = pos[None, :] < np.minimum(self.lengths[rows], width)[:, None]
        return real, (self.offsets[rows][:, None] + pos[None, :])[real]

    def batch(self, rows: np.ndarray, width: int) -> dict[int, torch.Tensor]:
        """Each layer's states for ``rows``, zero-padded to ``width`` tokens: (B, width, D) float32."""
        real, where = self._positions(np.asarray(rows), width)
        out = {}
        for k, flat in self.flat.items():
            t = np.zeros((len(rows), width, flat.shape[1]), np.float32)
            t[real] = flat[where]
            out[k] = torch.from_numpy(t)
        return out


class PooledLoss:
    """The weighted sum of the non-zero pooled terms for a batch, and each term (for the epoch's log).

    ``anchor``'s second-moment matrix is computed once here; ``neighbors`` draws its bank of ``bank`` training
    sentences' teacher embeddings from the ``bank_rng`` passed with each batch.
    """

    def __init__(self, weights: dict[str, float], teacher: np.ndarray, bank: int = 4096):
        self.weights = {k: w for k, w in weights.items() if w}
        self.teacher, self.bank = teacher, bank
        self.moment = second_moment(teacher) if "anchor" in self.weights else None

    def term(self, name: str, emb: torch.Tensor, t_emb: torch.Tensor, bank_rng: np.random.Generator) -> torch.Tensor:
        if name == "anchor":
            return anchor_loss(emb, t_emb, self.moment)
        if name == "neighbors":
            rows = np.sort(bank_rng.integers(0, len(self.teacher), self.bank))
            return neighbor_loss(emb, t_emb, torch.from_numpy(self.teacher[rows]))
        return POOLED[name](emb, t_emb)

    def __call__(
        self, emb: torch.Tensor, t_emb: torch.Tensor, bank_rng: np.random.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {name: self.term(name, emb, t_emb, bank_rng) for name in self.weights}
        return sum((self.weights[n] * t for n, t in terms.items()), torch.zeros(())), terms


def _width(teacher: nn.Module, layer: int) -> int:
    """The width of the teacher's hidden states after ``layer`` (MiniLM's config, or an edgekd text model's)."""
    return teacher.bert.config.hidden_size if hasattr(teacher, "bert") else teacher.widths[layer]


def _load(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable checkpoint is ignored: training starts over
        return None


def val_figures(student: nn.Module, val: Split, limit: int) -> dict:
    student.eval()
    e = encode(student, val.ids[:limit], val.mask[:limit], batch_size=128)
    t = val.teacher[:limit]
    return {
        "val_cosine": float((e * t).sum(1).mean()),
        "val_spearman": similarity_spearman(e, t),
        "val_top10": topk_overlap(e, t, 10),
    }


def distill(
    student: nn.Module,
    train: Split,
    val: Split,
    recipe: Recipe,
    seed: int,
    teacher: nn.Module | None = None,
    log: Callable[[str], None] = print,
    checkpoint: Path | None = None,
) -> Result:
    """Train ``student`` to reproduce the teacher's embeddings (and, optionally, chosen layers).

    With ``checkpoint``, the state after each epoch is saved there and a rerun resumes from it (a killed run loses at
    most one epoch); each epoch's batch order depends only on (seed, epoch), so a resumed run is the same run.
    """
    torch.manual_seed(seed)
    if recipe.layers and teacher is None:
        raise ValueError("hidden-state / attention terms need the teacher model (teacher=): its layers are read")
    projs = nn.ModuleDict(
        {
            f"{p.student}_{p.teacher}": nn.Linear(student.widths[p.student], _width(teacher, p.teacher))
            for p in recipe.layers
            if p.kind == "hidden"
        }
    )
    params = [*student.parameters(), *projs.parameters()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )
    steps = max(1, len(train.ids) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(steps * recipe.epochs, int(recipe.warmup_fraction * steps * recipe.epochs))
    )
    lengths = train.mask.sum(1)
    pooled = PooledLoss(recipe.weights, train.teacher, recipe.bank)
    best, best_state, history = None, None, []
    want_att = any(p.kind == "attention" for p in recipe.layers)
    cached = None
    if recipe.layers and not want_att:
        t0 = time.perf_counter()
        cached = TeacherStates(teacher, train, sorted({p.teacher for p in recipe.layers}))
        log(f"teacher token states of layers {sorted(cached.flat)} kept ({time.perf_counter() - t0:.0f} s)")
    start = 1
    saved = _load(checkpoint)
    if saved is not None:
        student.load_state_dict(saved["student"])
        projs.load_state_dict(saved["projs"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        best, best_state, history = (saved["best_epoch"], saved["best_val"]), saved["best_state"], saved["history"]
        start = saved["epoch"] + 1
        log(f"resuming after epoch {saved['epoch']} (checkpoint {checkpoint})")
    console.training_begins("text distill")
    with console.progress() as bar:
        task = bar.add_task("text distill", total=recipe.epochs * steps, completed=(start - 1) * steps, info="",
                            unit="batch")  # fmt: skip
        for epoch in range(start, recipe.epochs + 1):
            bar.update(task, description=f"text distill · epoch {epoch}/{recipe.epochs}")
            student.train()
            t0, total, parts = (
                time.perf_counter(),
                0.0,
                dict.fromkeys([*recipe.weights, *(p.kind for p in recipe.layers)], 0.0),
            )
            rng, bank_rng = np.random.default_rng([seed, epoch]), np.random.default_rng([seed, epoch, 1])
            for rows in batches(lengths, recipe.batch_size, rng, recipe.group_by_length):
                ids, mask, t_emb = batch_tensors(train, rows, lengths)
                emb, s_hidden, s_att = student.features(ids, mask)
                loss, terms = pooled(emb, t_emb, bank_rng)
                for name, term in terms.items():
                    parts[name] += float(term.detach())
                if cached is not None:
                    t_hidden, t_att = cached.batch(rows, ids.shape[1]), []
                elif recipe.layers:
                    with torch.no_grad():
                        _, t_hidden, t_att = teacher.features(ids, mask, attentions=want_att)
                for p in recipe.layers:
                    if p.kind == "hidden":
                        term = hidden_loss(
                            projs[f"{p.student}_{p.teacher}"], s_hidden[p.student], t_hidden[p.teacher], mask
                        )
                    else:
                        term = attention_loss(s_att[p.student], t_att[p.teacher], mask)
                    parts[p.kind] += float(term.detach())
                    loss = loss + p.weight * term
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach())
                bar.advance(task)
            figs = val_figures(student, val, recipe.val_limit)
            row = {
                "epoch": epoch,
                "loss": round(total / steps, 5),
                "seconds": round(time.perf_counter() - t0, 1),
                **{k: round(v / steps, 5) for k, v in parts.items()},
                **{k: round(v, 4) for k, v in figs.items()},
            }
            history.append(row)
            eta = console.epoch_done(row["seconds"], recipe.epochs - epoch)
            left = f", ETA {console.duration(eta)} for this stage" if eta >= 1 else ""
            log(
                f"epoch {epoch}/{recipe.epochs}: loss {row['loss']:.4f}, val cosine {figs['val_cosine']:.4f}, "
                f"spearman {figs['val_spearman']:.4f}, top-10 {figs['val_top10']:.3f} ({row['seconds']} s{left})"
            )
            bar.update(task, info=f"stage ETA {console.duration(eta)}" if eta >= 1 else "")
            if best is None or figs["val_spearman"] > best[1]["val_spearman"]:
                best = (epoch, figs)
                best_state = copy.deepcopy(student.state_dict())
            if checkpoint is not None:
                state = {
                    "epoch": epoch,
                    "student": student.state_dict(),
                    "projs": projs.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "best_epoch": best[0],
                    "best_val": best[1],
                    "best_state": best_state,
                    "history": history,
                }
                buf = io.BytesIO()
                torch.save(state, buf)
                atomic_write_bytes(checkpoint, buf.getvalue())
    assert best is not None and best_state is not None
    student.load_state_dict(best_state)
    student.eval()
    return Result(best[0], best[1], history)

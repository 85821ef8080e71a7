"""The one training loop every training stage uses (teacher, distillation, scratch baseline).

Seeded: the batch order and augmentation draw from their own generators, so a CPU run is repeatable. The best
epoch by validation accuracy is kept.
"""

from __future__ import annotations

import copy
import io
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.core import console
from edgekd.core.config import AugmentConfig, TrainConfig
from edgekd.core.fsutil import atomic_write_bytes
from edgekd.data import SplitData, normalize
from edgekd.data.dataset import draw_augment, warp
from edgekd.training import distributed

# loss(student_logits, labels, normalised_inputs) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# views(raw_images, sample_indices, epoch, drawn_augmentation_or_None) -> the images to train on (teacher cache)
ViewsFn = Callable[[torch.Tensor, np.ndarray, int, torch.Tensor | None], torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    best_val_accuracy: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15, anneal_strategy="cos"
        )
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray, mean: list[float], std: list[float], device: str = "cpu", batch_size: int = 256
) -> torch.Tensor:
    model.eval()
    outs = [
        model(normalize(torch.from_numpy(np.array(x[i : i + batch_size])).to(device), mean, std)).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(outs)


def evaluate(model: nn.Module, data: SplitData, split: str, device: str = "cpu") -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) on a split."""
    x, y = data.arrays[split]
    logits = predict_logits(model, x, data.mean, data.std, device)
    target = torch.from_numpy(np.asarray(y))
    return float((logits.argmax(1) == target).float().mean()), float(F.cross_entropy(logits, target))


def accuracy(model: nn.Module, data: SplitData, split: str, device: str = "cpu") -> float:
    return evaluate(model, data, split, device)[0]


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    gen: torch.Generator,
    aug: AugmentConfig,
    epoch: int,
    views: ViewsFn | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """This process's training batches for one epoch: (raw images, labels, loss weight).

    One permutation per epoch and, with augmentation, one draw per global batch come from ``gen`` on every rank, so
    under torchrun each rank's shard holds exactly the images and views one process would have had in that batch
    (and one process sees the same stream as ever). ``views`` decides the images instead (it gets the draw).
    """
    order = torch.randperm(len(y), generator=gen).numpy()
    for i in range(0, len(y), batch_size):
        batch = order[i : i + batch_size]
        params = (
            draw_augment(len(batch), x.shape[2], gen, aug.max_shift, aug.max_rotate_deg, aug.crop_scale, aug.hflip)
            if aug.enabled
            else None
        )
        pos, idx, weight = distributed.shard_batch(batch)
        # fancy indexing copies just this batch out of a (possibly memory-mapped, read-only) array
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        if views is not None:
            xb = views(xb, idx, epoch, None if params is None else params[pos])
        elif params is not None:
            xb = warp(xb, params[pos])
        yield xb, yb, weight


def epoch_line(desc: str, row: dict, epochs: int, seconds: float, eta: float, parts: dict | None = None) -> str:
    """The line each epoch leaves on screen: ``teacher · epoch 3/12 · loss 0.412 · val acc 0.951 ...``."""
    detail = f" ({', '.join(f'{k} {v:.3f}' for k, v in parts.items())})" if parts else ""
    left = f" · ETA {console.duration(eta)} for this stage" if eta >= 1 else ""
    return (
        f"  {desc} · epoch {row['epoch']}/{epochs} · loss {row['loss']:.4f}{detail} · val acc "
        f"{row['val_accuracy']:.4f} (loss {row['val_loss']:.4f}) · {seconds:.1f} s{left}"
    )


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a checkpoint we cannot read is ignored: training restarts from epoch 1
        return None


def fit(
    model: nn.Module,
    data: SplitData,
    cfg: TrainConfig,
    aug: AugmentConfig,
    seed: int,
    loss_fn: LossFn,
    desc: str,
    device: str = "cpu",
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    select_best: bool = True,
    views: ViewsFn | None = None,
    loss_parts: Callable[[], dict[str, torch.Tensor]] | None = None,
) -> TrainResult:
    """Train ``model`` in place with ``loss_fn``; on return it holds the weights of the best validation epoch.

    The best epoch is the one with the highest validation accuracy, ties broken by the lower validation loss (small
    validation sets saturate at 100 %, and the first epoch to get there is rarely the best one).
    With ``checkpoint``, the full training state (weights, optimiser, scheduler, RNG, best-so-far) is saved after every
    epoch and, when present, training resumes after the last finished epoch and ends at the same weights.
    ``on_epoch`` is called with each epoch's history row (epochs restored from a checkpoint included); by default it
    is the active experiment tracker's hook (edgekd.core.tracking), if tracking is on.
    ``select_best=False`` keeps the last epoch's weights instead: for methods that must not choose with the (real)
    validation split, such as data-free distillation; validation is then only reported.
    ``views`` (the teacher cache's) replaces random augmentation with pre-drawn views.
    ``loss_parts`` returns the last step's loss parts (detached tensors, e.g. a distillation objective's terms); their
    epoch means (over this process's batches) are shown in the epoch line when there is more than one.
    Progress: a per-batch bar (rate, time left for this training) on a terminal, and one line per epoch that stays
    (loss, validation, seconds, and from the first epoch on the estimated time left for the whole stage).
    Inside a stage every torchrun rank runs (edgekd.training.distributed.all_ranks) the model trains under
    DistributedDataParallel on this rank's shard of every batch (``batch_size`` stays the global batch), BatchNorm
    statistics are averaged over ranks after each epoch, rank 0's validation figures choose the best epoch on every
    rank, and only rank 0 writes the checkpoint. Anywhere else it trains as one process.
    """
    if on_epoch is None:
        from edgekd.core.tracking import epoch_hook

        on_epoch = epoch_hook(desc)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    xtr, ytr = data.arrays["train"]
    steps = (len(ytr) + cfg.batch_size - 1) // cfg.batch_size
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    best = {"acc": -1.0, "loss": float("inf"), "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    history: list[dict] = []
    start = 1
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    saved = _load_checkpoint(checkpoint)
    if distributed.active():
        distributed.agree(saved["epoch"] if saved else 0, "the epoch to resume from")
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        best, history, start = saved["best"], saved["history"], saved["epoch"] + 1
        for row in history if on_epoch else ():
            on_epoch(row)
    net = distributed.wrap(model, device)
    console.training_begins(desc)
    with console.progress() as bar:
        task = bar.add_task(desc, total=cfg.epochs * steps, completed=(start - 1) * steps, info="", unit="batch")
        for epoch in range(start, cfg.epochs + 1):
            t0 = time.perf_counter()
            bar.update(task, description=f"{desc} · epoch {epoch}/{cfg.epochs}")
            model.train()
            total, n = 0.0, 0
            sums: dict[str, torch.Tensor] = {}
            for xb, yb, weight in epoch_batches(xtr, ytr, cfg.batch_size, gen, aug, epoch, views):
                xb, yb = normalize(xb, data.mean, data.std).to(device), yb.to(device)
                if cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                loss = loss_fn(net(xb), yb, xb)
                opt.zero_grad(set_to_none=True)
                (loss if weight == 1.0 else loss * weight).backward()
                opt.step()
                sched.step()
                if weight > 0:
                    total += float(loss.detach()) * len(yb)
                    n += len(yb)
                    for k, v in (loss_parts() if loss_parts else {}).items():
                        sums[k] = sums.get(k, 0.0) + v * len(yb)
                bar.advance(task)
            parts = {k: round(float(v) / n, 5) for k, v in sums.items()} if n and len(sums) > 1 else {}
            if distributed.active():
                total, n = distributed.all_reduce_sum(torch.tensor([total, float(n)], dtype=torch.float64)).tolist()
                distributed.average_buffers(model)
            val_acc, val_loss = evaluate(model, data, "val", device)
            if distributed.active():  # rank 0's figures choose the best epoch on every rank
                val_acc, val_loss = distributed.broadcast_object((val_acc, val_loss))
            history.append(
                {
                    "epoch": epoch,
                    "loss": round(total / n, 5),
                    "val_accuracy": round(val_acc, 5),
                    "val_loss": round(val_loss, 5),
                }
            )
            if on_epoch is not None:
                on_epoch(history[-1])
            if (val_acc, -val_loss) > (best["acc"], -best["loss"]):
                best = {"acc": val_acc, "loss": val_loss, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
            if checkpoint is not None and distributed.is_main():
                _save_checkpoint(
                    checkpoint,
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "best": best,
                        "history": history,
                    },
                )
            seconds = time.perf_counter() - t0
            eta = console.epoch_done(seconds, cfg.epochs - epoch)
            console.log(epoch_line(desc, history[-1], cfg.epochs, seconds, eta, parts))
            bar.update(task, info=f"stage ETA {console.duration(eta)}" if eta >= 1 else "")
    if cfg.channels_last:
        model.to(memory_format=torch.contiguous_format)  # saved and exported weights keep the usual layout
    model.eval()
    if not select_best and history:
        return TrainResult(history[-1]["val_accuracy"], history[-1]["epoch"], history)
    model.load_state_dict(best["state"])
    return TrainResult(best["acc"], best["epoch"], history)

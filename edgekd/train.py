"""The one training loop every training stage uses (teacher, distillation, scratch baseline).

Seeded: the batch order and augmentation draw from their own generators, so a CPU run is repeatable. The best
epoch by validation accuracy is kept.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgekd.config import AugmentConfig, TrainConfig
from edgekd.console import progress
from edgekd.data import SplitData, augment, batches, normalize

# loss(student_logits, labels, normalised_inputs) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15,
                                                   anneal_strategy="cos")
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, mean: list[float], std: list[float], device: str = "cpu",
                   batch_size: int = 256) -> torch.Tensor:
    model.eval()
    outs = [model(normalize(torch.from_numpy(x[i : i + batch_size]).to(device), mean, std)).float().cpu()
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs)


def accuracy(model: nn.Module, data: SplitData, split: str, device: str = "cpu") -> float:
    x, y = data.arrays[split]
    return float((predict_logits(model, x, data.mean, data.std, device).argmax(1).numpy() == y).mean())


def fit(model: nn.Module, data: SplitData, cfg: TrainConfig, aug: AugmentConfig, seed: int, loss_fn: LossFn,
        desc: str, device: str = "cpu") -> TrainResult:
    """Train ``model`` in place with ``loss_fn``; on return it holds the weights of the best validation epoch."""
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    xtr, ytr = data.arrays["train"]
    steps = (len(ytr) + cfg.batch_size - 1) // cfg.batch_size
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    history = []
    with progress() as bar:
        task = bar.add_task(desc, total=cfg.epochs, info="")
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            total, n = 0.0, 0
            for xb, yb in batches(xtr, ytr, cfg.batch_size, gen, shuffle=True):
                if aug.enabled:
                    xb = augment(xb, gen, aug.max_shift, aug.max_rotate_deg)
                xb, yb = normalize(xb, data.mean, data.std).to(device), yb.to(device)
                loss = loss_fn(model(xb), yb, xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(yb)
                n += len(yb)
            val_acc = accuracy(model, data, "val", device)
            history.append({"epoch": epoch, "loss": round(total / n, 5), "val_accuracy": round(val_acc, 5)})
            if val_acc > best[0]:
                best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
            bar.update(task, advance=1, info=f"loss {total / n:.3f}  val {val_acc:.3f}")
    model.load_state_dict(best[2])
    model.eval()
    return TrainResult(best[0], best[1], history)

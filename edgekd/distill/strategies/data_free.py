"""data_free: distil with no training data, only the teacher's weights (DeepInversion, Yin et al. 2020).

Synthesis: batches of images start as noise and are optimised so that, fed through the frozen teacher, (1) the
teacher classifies them as sampled target classes (cross-entropy), (2) the mean and variance of every BatchNorm
layer's input over the batch match that layer's running statistics — the summary of the training data the teacher
carries in its weights (``bn_weight``, the first layer's term scaled by ``first_bn_weight``), and (3) they are smooth
and bounded (total variation ``tv_weight``, L2 ``l2_weight``), with a random shift of up to ``jitter`` pixels each step.
Distillation: the student learns from the teacher's soft targets (and its top-1 as hard label) on the synthetic images
only, with the stage's recipe and augmentation.

Real data is used only to evaluate. The real train split is never read; neither is the real validation split while
training: ``fit`` keeps the *last* epoch (``select_best=False``) and its per-epoch "validation" is agreement with the
teacher on held-out synthetic images. The normalisation constants (mean/std) are the teacher's input contract: they
travel in the teacher's metadata, like its input size and labels.
"""

from __future__ import annotations

import io
import math
import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.distill.strategies.base import StrategyConfig, StrategyResult, register_strategy


class DataFreeConfig(StrategyConfig):
    kind: Literal["data_free"] = "data_free"
    images: int = Field(512, ge=4, le=1_000_000, description="synthetic images to make (train + held-out)")
    batch_size: int = Field(128, ge=2, le=65_536, description="images optimised together (BN statistics are per batch)")
    iterations: int = Field(100, ge=1, le=100_000, description="optimisation steps per batch")
    lr: float = Field(0.2, gt=0, le=10, description="Adam learning rate on the pixels (cosine-decayed to 0)")
    bn_weight: float = Field(0.1, ge=0, le=1e6, description="weight of the BatchNorm-statistics term")
    first_bn_weight: float = Field(10.0, ge=0, le=1e6, description="extra factor on the first BatchNorm layer's term")
    tv_weight: float = Field(3.0, ge=0, le=1e6, description="weight of the total-variation prior")
    l2_weight: float = Field(0.0, ge=0, le=1e6, description="weight of the L2 prior on the (normalised) pixels")
    jitter: int = Field(2, ge=0, le=64, description="random shift (pixels, both axes) applied at each step")
    holdout: float = Field(0.1, ge=0, lt=0.9, description="fraction of synthetic images held out to report agreement")


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers that carry running statistics (the only ones DeepInversion can match)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None
    ]


class BNStatistics:
    """Forward hooks on every BatchNorm layer; ``loss()`` is DeepInversion's feature-statistics term of the latest
    forward: sum over layers of ||batch mean - running mean||_2 + ||batch var - running var||_2."""

    def __init__(self, model: nn.Module, first_weight: float = 1.0):
        self.layers = batchnorm_layers(model)
        self.first_weight = first_weight
        self._terms: dict[int, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, index: int):
        def hook(module, inputs, _output):
            x = inputs[0]
            dims = [0, *range(2, x.dim())]  # every axis but the channels
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            self._terms[index] = torch.linalg.vector_norm(mean - module.running_mean) + torch.linalg.vector_norm(
                var - module.running_var
            )

        return hook

    def loss(self) -> torch.Tensor:
        terms, self._terms = self._terms, {}
        if not terms:
            return torch.zeros(())
        return sum((self.first_weight if i == 0 else 1.0) * t for i, t in sorted(terms.items()))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (horizontal, vertical, both diagonals), summed.

    Means rather than DeepInversion's norms, so that the weight does not depend on the batch or image size.
    """
    return (
        (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
        + (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
        + (x[..., 1:, 1:] - x[..., :-1, :-1]).pow(2).mean()
        + (x[..., 1:, :-1] - x[..., :-1, 1:]).pow(2).mean()
    )


def synthesize_batch(
    teacher: nn.Module, targets: torch.Tensor, shape: tuple[int, int, int], lo: torch.Tensor, hi: torch.Tensor,
    scfg: DataFreeConfig, gen: torch.Generator, device: str = "cpu",
) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """Optimise one batch of normalised images for ``targets``; returns them (detached) and the final loss parts."""
    teacher.eval()
    lo, hi, targets = lo.to(device), hi.to(device), targets.to(device)
    x = torch.randn(len(targets), *shape, generator=gen).to(device)
    x = torch.max(torch.min(x, hi), lo).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=scfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / scfg.iterations)))
    stats = BNStatistics(teacher, scfg.first_bn_weight)
    parts: dict = {}
    try:
        for _ in range(scfg.iterations):
            dx, dy = (
                torch.randint(-scfg.jitter, scfg.jitter + 1, (2,), generator=gen).tolist() if scfg.jitter else (0, 0)
            )
            xj = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
            ce = F.cross_entropy(teacher(xj).float(), targets)
            bn = stats.loss()
            tv, l2 = total_variation(xj), xj.pow(2).mean()
            loss = ce + scfg.bn_weight * bn + scfg.tv_weight * tv + scfg.l2_weight * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.copy_(torch.max(torch.min(x, hi), lo))  # stay inside the range real pixels ([0, 1]) map to
            parts = {"ce": ce.item(), "bn": bn.item(), "tv": tv.item(), "loss": loss.item()}
    finally:
        stats.remove()
    return x.detach().cpu(), parts


def _load_progress(path) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable progress: synthesise again from the first batch
        return None


def _save_progress(path, state: dict) -> None:
    from edgekd.core.fsutil import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def synthesize(teacher: nn.Module, env, scfg: DataFreeConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """All synthetic images (normalised) and their target classes; each finished batch is kept so a killed run
    resumes (batch ``b`` draws from its own seeded generator, so a resumed run makes the same images)."""
    data = env.data
    shape = tuple(data.input_shape[1:])
    mean = torch.tensor(data.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(-1, 1, 1)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    k = data.num_classes
    ckpt = env.ctx.checkpoint("synthetic")
    state = _load_progress(ckpt) or {"x": [], "y": [], "parts": [], "seconds": 0.0}
    t0 = time.perf_counter() - state["seconds"]
    n_batches = math.ceil(scfg.images / scfg.batch_size)
    from edgekd.core import console

    with console.progress() as bar:
        task = bar.add_task("data-free synthesis", total=n_batches, completed=len(state["x"]), info="", unit="batch")
        first, t_start = len(state["x"]), time.perf_counter()
        for b in range(first, n_batches):
            n = min(scfg.batch_size, scfg.images - b * scfg.batch_size)
            targets = (torch.arange(n) + b * scfg.batch_size) % k  # every class equally often
            gen = torch.Generator().manual_seed(env.seed * 100_003 + b)
            x, parts = synthesize_batch(teacher, targets, shape, lo, hi, scfg, gen, env.device)
            state["x"].append(x)
            state["y"].append(targets)
            state["parts"].append(parts)
            state["seconds"] = time.perf_counter() - t0
            if ckpt is not None:
                _save_progress(ckpt, state)
            bar.update(task, advance=1, info=f"ce {parts['ce']:.3f}  bn {parts['bn']:.3f}")
            done, per_batch = b + 1, (time.perf_counter() - t_start) / (b + 1 - first)
            eta = per_batch * (n_batches - done)
            left = f" · ETA {console.duration(eta)} for the synthesis" if eta > 0 else ""
            parts_text = f"ce {parts['ce']:.3f} · bn {parts['bn']:.3f}"
            console.log(f"  data-free synthesis · batch {done}/{n_batches} · {parts_text} · {per_batch:.1f} s{left}")
    info = {
        "seconds": round(state["seconds"], 1),
        **{f"final_{p}": round(float(np.mean([q[p] for q in state["parts"]])), 5) for p in ("ce", "bn", "tv")},
    }
    return torch.cat(state["x"]), torch.cat(state["y"]), info


@torch.no_grad()
def teacher_labels(teacher: nn.Module, x: torch.Tensor, device: str = "cpu", batch_size: int = 256) -> torch.Tensor:
    teacher.eval()
    return torch.cat([teacher(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def synthetic_split(env, x_norm: torch.Tensor, labels: torch.Tensor, holdout: float):
    """A SplitData of synthetic images (pixels in [0, 1], as real splits hold them): train, and a held-out part as
    'val' (and 'test', which fit never reads) so per-epoch validation measures agreement on unseen synthetic images."""
    from edgekd.data import SplitData

    data = env.data
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    pixels = (x_norm * std + mean).clamp_(0, 1).numpy().astype(np.float32)
    y = labels.numpy().astype(np.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(env.seed)).numpy()
    n_val = min(round(holdout * len(y)), len(y) - 1)
    val, train = (order[:n_val], order[n_val:]) if n_val > 0 else (order, order)
    arrays = {"train": (pixels[train], y[train]), "val": (pixels[val], y[val]), "test": (pixels[val], y[val])}
    return SplitData(arrays, data.labels, data.mean, data.std, data.facts)


def save_preview(path, pixels: np.ndarray, per_row: int = 10, rows: int = 10) -> None:
    """A PNG grid of the first synthetic images, so a person can see what the student learnt from."""
    from PIL import Image

    n = min(len(pixels), per_row * rows)
    if n == 0:
        return
    c, h, w = pixels.shape[1:]
    grid = np.zeros((math.ceil(n / per_row) * (h + 1), per_row * (w + 1), c), np.float32)
    for i in range(n):
        r, q = divmod(i, per_row)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = pixels[i].transpose(1, 2, 0)
    img = (grid * 255).round().astype(np.uint8)
    Image.fromarray(img[..., 0] if c == 1 else img).resize((grid.shape[1] * 4, grid.shape[0] * 4)).save(path)


def _check(scfg: DataFreeConfig, cfg, pipeline) -> list[str]:
    """One teacher, with BatchNorm layers (their running statistics are the only data DeepInversion has), and no
    option that would read the real training split (the teacher cache fills from it; purification summarises it)."""
    from edgekd.core.errors import EdgekdError
    from edgekd.models import build_model

    if len(cfg.teachers) != 1:
        return [f"strategy 'data_free' inverts one teacher: give exactly one in 'teachers' (got {len(cfg.teachers)})"]
    real = [
        k
        for k, on in (
            ("teacher_cache", getattr(getattr(cfg, "teacher_cache", None), "enabled", False)),
            ("purify", getattr(cfg, "purify", None)),
        )
        if on
    ]
    if real:
        return [
            f"strategy 'data_free' never reads the real training split, which {' and '.join(real)} would: remove it"
        ]
    name = cfg.teachers[0]
    spec = pipeline.spec_of(name, cfg)
    if spec is None:
        return []
    channels, classes = pipeline.data.model_io()
    try:
        model = build_model(spec, channels, classes)
    except EdgekdError:
        return []  # the teacher stage reports its own model error
    return [] if batchnorm_layers(model) else [_no_bn_message(name, spec.get("name") or spec.get("import"))]


def _no_bn_message(name: str, label: str) -> str:
    return (
        f"strategy 'data_free' (DeepInversion) needs BatchNorm layers in teacher '{name}' ({label} has none): it "
        "synthesises data from their running statistics; use a teacher with BatchNorm or another strategy"
    )


@register_strategy("data_free", DataFreeConfig, check=_check)
def run_data_free(scfg: DataFreeConfig, env) -> StrategyResult:
    from edgekd.data import normalize
    from edgekd.distill.objective import DistillModule

    teacher = env.teachers[0]  # the first teacher is inverted; every teacher gives soft targets when distilling
    if not batchnorm_layers(teacher):
        raise ConfigError(_no_bn_message(env.cfg.teachers[0], type(teacher).__name__))
    x_norm, targets, info = synthesize(teacher, env, scfg)
    labels = teacher_labels(teacher, x_norm, env.device)
    synth = synthetic_split(env, x_norm, labels, scfg.holdout)
    save_preview(env.ctx.out_dir / "synthetic_preview.png", synth.arrays["train"][0])
    student = env.new_student()
    sample = normalize(torch.from_numpy(synth.arrays["train"][0][:2].copy()), synth.mean, synth.std)
    module = DistillModule(student, env.objective(True), env.teachers, env.teacher_signal(), sample)
    res = env.fit(module, "student", "data-free distill (synthetic only)", data=synth, select_best=False)
    module.remove_hooks()
    info.update(
        images=len(labels),
        teacher_hits_target=round(float((labels == targets).float().mean()), 4),
        class_counts=np.bincount(labels.numpy(), minlength=env.data.num_classes).tolist(),
        synthetic_holdout_agreement=res.best_val_accuracy,
    )
    env.ctx.note(
        f"data-free: {info['images']} synthetic images in {info['seconds']} s; teacher hit the target class on "
        f"{100 * info['teacher_hits_target']:.1f} %; last epoch kept (no real data used to select)"
    )
    meta = {"best_epoch": res.best_epoch, "selection": "last epoch", "history": res.history, "synthesis": info}
    return StrategyResult(student, meta)

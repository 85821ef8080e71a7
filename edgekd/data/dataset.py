"""Turn a source into a fixed, seeded train/val/test split with normalisation statistics, and iterate batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgekd.data.sources import SOURCES
from edgekd.errors import DataError
from edgekd.fsutil import atomic_path

SPLITS = ("train", "val", "test")


@dataclass
class SplitData:
    """Images as float32 [0, 1] N x C x H x W per split, plus what travels with every model trained on them."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    labels: list[str]
    mean: list[float]
    std: list[float]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        x = self.arrays["train"][0]
        return (1, *x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def meta(self) -> dict:
        """Metadata every model trained on this data carries: layout, shape, normalisation, labels."""
        return {"input_layout": "NCHW", "input_shape": list(self.input_shape), "mean": self.mean, "std": self.std,
                "labels": self.labels}

    def calibration(self, n: int, seed: int) -> np.ndarray:
        """``n`` normalised training images picked with ``seed``: the representative set for int8 calibration."""
        x = self.arrays["train"][0]
        pick = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
        mean = np.asarray(self.mean, np.float32)[None, :, None, None]
        std = np.asarray(self.std, np.float32)[None, :, None, None]
        return ((x[pick] - mean) / std).astype(np.float32)

    def save(self, path: Path) -> Path:
        payload = {f"{k}_{s}": v for s, (x, y) in self.arrays.items() for k, v in (("x", x), ("y", y))}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **payload, labels=np.asarray(self.labels), mean=np.asarray(self.mean, np.float32),
                         std=np.asarray(self.std, np.float32))
        return path

    @classmethod
    def load(cls, path: Path) -> SplitData:
        with np.load(path, allow_pickle=False) as z:
            arrays = {s: (z[f"x_{s}"], z[f"y_{s}"]) for s in SPLITS}
            return cls(arrays, [str(v) for v in z["labels"]], z["mean"].tolist(), z["std"].tolist())


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, taken): ``fraction`` of every class taken, so small classes still appear in every split."""
    taken, rest = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        taken.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(taken))


def build_splits(cfg) -> SplitData:
    """Load the configured source and split it with a fixed seed (``cfg.split_seed``), independent of training seeds."""
    raw = SOURCES.get(cfg.source)(cfg)
    rng = np.random.default_rng(cfg.split_seed)
    given = raw.splits or {}
    x, y = raw.x, raw.y
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, frac in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        if split in given:
            arrays[split] = given[split]
            continue
        # fraction of the whole data set, taken from what is left
        rest, taken = _stratified_split(y, frac * len(raw.y) / max(len(y), 1), rng)
        arrays[split] = (x[taken], y[taken])
        x, y = x[rest], y[rest]
    arrays["train"] = (x, y)
    for split in SPLITS:
        if len(arrays[split][1]) == 0:
            raise DataError(f"the {split} split is empty: add data or change data.{split}_fraction")
    if cfg.labels is not None:
        if len(cfg.labels) != len(raw.labels):
            raise DataError(f"data.labels has {len(cfg.labels)} names but the data has {len(raw.labels)} classes")
        raw.labels = list(cfg.labels)
    xtr = arrays["train"][0]
    mean = cfg.mean or xtr.mean(axis=(0, 2, 3)).round(6).tolist()
    std = cfg.std or np.maximum(xtr.std(axis=(0, 2, 3)), 1e-6).round(6).tolist()
    if len(mean) != xtr.shape[1] or len(std) != xtr.shape[1]:
        raise DataError(f"data.mean/std need {xtr.shape[1]} values (one per channel)")
    ordered = {s: (arrays[s][0].astype(np.float32), arrays[s][1].astype(np.int64)) for s in SPLITS}
    return SplitData(ordered, raw.labels, [float(v) for v in mean], [float(v) for v in std])


def normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: float, max_rotate_deg: float) -> torch.Tensor:
    """Light, label-preserving augmentation: a random shift (pixels) and rotation per image, in one affine warp."""
    n, _, h, _ = x.shape
    ang = (torch.rand(n, generator=gen) * 2 - 1) * (max_rotate_deg * torch.pi / 180)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift / h)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, gen: torch.Generator | None,
            shuffle: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) batches; the order comes from ``gen`` so a seeded run sees the same batches."""
    n = len(y)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield xt[idx], yt[idx]

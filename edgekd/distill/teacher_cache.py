"""Teacher knowledge computed once and replayed: the teacher's logits cached per training image and view.

Distillation pays a teacher forward pass for every student step; with a fixed teacher that is the same computation
every epoch. The cache runs the teacher once, in inference mode on a fused, channels-last copy and in large batches,
and replays its logits while the student trains (FKD, Shen & Xing 2022, soft-label replay). Three cases:

* augmentation off: one logit vector per training image. **Exact**: the student gets the logits the live teacher
  would have computed (up to float rounding, ~1e-6).
* augmentation on (default): ``views`` augmented views per image are drawn once (seeded) and the teacher's logits
  stored for each; in epoch e the student trains on view ``(e + offset_i) mod views`` of image i, *the same view
  the teacher saw*. Teacher and student stay consistent (what Beyer et al. 2022 ask for); the approximation is in the
  augmentation only: ``views`` fixed draws per image instead of a fresh draw every epoch (with ``views`` >= epochs,
  every epoch still gets its own draw).
* ``unaugmented: true``: the teacher's logits on the clean image while the student sees freshly augmented ones.
  Cheapest, and **inconsistent** (the teacher describes another picture); kept to measure Beyer et al.'s warning.

The cache holds logits only. A loss term that needs teacher features (``teacher_layers()``) makes the stage use the
live teacher instead: features are large (channels x H x W per view) and caching them is rarely cheaper.

How it plugs in: each teacher is replaced by a :class:`CachedTeacher`, and ``fit`` gets :meth:`TeacherCache.views`
as its ``views`` hook, which picks each batch's images and tells the cache which samples and views the next teacher
call is about. A teacher call that does not match the batch (another strategy's own calls, a shape probe, synthetic
data) runs the live teacher, so a cached teacher is never wrong, at worst slow; those calls are counted.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import nn

from edgekd import __version__
from edgekd.core.config import AugmentConfig, Strict
from edgekd.core.errors import ConfigError, ModelError
from edgekd.core.fsutil import atomic_write_bytes, json_sha256
from edgekd.data import SplitData, normalize
from edgekd.data.dataset import draw_augment, warp
from edgekd.training import distributed


class TeacherCacheConfig(Strict):
    enabled: bool = Field(False, description="compute the teachers' logits once and replay them (FKD)")
    views: int = Field(
        8, ge=1, le=1000, description="augmented views per training image (augmentation on); epoch e uses view e mod K"
    )
    unaugmented: bool = Field(
        False, description="cache logits of un-augmented images while the student sees fresh augmentation (inexact)"
    )
    batch_size: int = Field(128, ge=1, le=65_536, description="teacher batch size while filling the cache")
    reuse: bool = Field(
        True, description="keep the logits in the run directory (.cache/) for later runs with the same teacher and data"
    )


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference only: eval mode, Conv+BatchNorm folded when torch.fx can trace it, channels
    last. The model itself is untouched (feature taps and the stage's teacher stay as they were)."""
    fast = copy.deepcopy(model).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        fast = fuse(fast)
    except Exception:  # not traceable by torch.fx (data-dependent control flow): keep the unfused copy
        pass
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast.to(memory_format=torch.channels_last)


class TeacherCache:
    """Teachers' logits per (training image, view), filled on first use, then served batch by batch."""

    def __init__(
        self,
        cfg: TeacherCacheConfig,
        teachers: list[nn.Module],
        data: SplitData,
        aug: AugmentConfig,
        seed: int,
        device: str = "cpu",
        store: Path | None = None,
        ident: dict | None = None,
    ):
        """``store`` (a folder) and ``ident`` (the content hashes of the teachers and data) let the logits be saved
        and found again by a later run; the file is named by a hash of everything that determines them."""
        self.cfg, self.live, self.data, self.aug, self.device = cfg, list(teachers), data, aug, device
        self.x, _ = data.arrays["train"]
        n = len(self.x)
        self.mode = "plain" if not aug.enabled else ("unaugmented" if cfg.unaugmented else "views")
        self.k = cfg.views if self.mode == "views" else 1
        # a generator of its own, so the views do not shift the training run's random stream
        gen = torch.Generator().manual_seed(seed + 0x7EAC)
        self.params = None
        self.offset = np.zeros(n, dtype=np.int64)
        if self.mode == "views":
            self.params = draw_augment(
                n * self.k, self.x.shape[2], gen, aug.max_shift, aug.max_rotate_deg, aug.crop_scale, aug.hflip
            )
            self.params = self.params.view(self.k, n, -1).transpose(0, 1).contiguous()  # (n, k, 3 or 7)
            self.offset = torch.randint(self.k, (n,), generator=gen).numpy()
        self.logits: list[torch.Tensor] | None = None  # per teacher: (n, k, classes), float32, CPU
        self._pending: tuple[torch.Tensor, float] | None = None  # (row index into n*k, fingerprint)
        self._served: set[int] = set()
        self.stats = {"hits": 0, "live_calls": 0, "build_seconds": 0.0, "teacher_forwards": 0, "source": "computed"}
        self.file = None
        if store is not None and ident is not None:
            what = {**ident, "mode": self.mode, "views": self.k, "seed": seed, "augment": aug.model_dump(mode="json")}
            what["versions"] = {"edgekd": __version__, "torch": torch.__version__}
            self.key = json_sha256(what)
            self.file = Path(store) / f"teacher-logits-{self.key[:24]}.pt"

    # ------------------------------------------------------------------ filling

    def build(self) -> None:
        """Run every teacher once over every (image, view); under torchrun each rank computes a share."""
        if self.logits is not None:
            return
        t0 = time.perf_counter()
        if self.file is not None and self._reload():
            self.stats.update(source="reused", build_seconds=round(time.perf_counter() - t0, 3))
            return
        n, k = len(self.x), self.k
        rows = np.arange(n * k)
        w, r = (distributed.world_size(), distributed.rank()) if distributed.active() else (1, 0)
        per = -(-len(rows) // w)
        mine = rows[r * per : (r + 1) * per]
        if len(mine) < per:  # equal shares keep all_gather simple; the padding rows are computed and dropped
            mine = np.concatenate([mine, np.zeros(per - len(mine), dtype=np.int64)])
        out = []
        for teacher in self.live:
            fast = inference_copy(teacher).to(self.device)
            parts = []
            with torch.inference_mode():
                for i in range(0, len(mine), self.cfg.batch_size):
                    chunk = mine[i : i + self.cfg.batch_size]
                    x = self._images(chunk).to(self.device).contiguous(memory_format=torch.channels_last)
                    parts.append(fast(x).float())
            local = torch.cat(parts) if parts else torch.empty(0)
            full = torch.cat(distributed.all_gather_rows(local.clone()) if w > 1 else [local.clone()])[: n * k]
            out.append(full.cpu().view(n, k, -1))
            self.stats["teacher_forwards"] += len(mine)
        self.logits = out
        self.stats["build_seconds"] = round(time.perf_counter() - t0, 3)
        if self.file is not None and distributed.is_main():
            buf = io.BytesIO()
            torch.save({"key": self.key, "logits": out}, buf)
            atomic_write_bytes(self.file, buf.getvalue())

    def _reload(self) -> bool:
        """Logits saved by an earlier run, if rank 0 finds a valid file (then every rank reads it)."""
        if not distributed.active():
            self.logits = self._read()
            return self.logits is not None
        found = self._read() if distributed.is_main() else None
        if not distributed.broadcast_object(found is not None):
            return False
        self.logits = found if found is not None else self._read()
        if self.logits is None:
            raise ModelError(f"teacher cache {self.file} could not be read on rank {distributed.rank()}")
        return True

    def _read(self) -> list[torch.Tensor] | None:
        try:
            saved = torch.load(self.file, map_location="cpu", weights_only=True)
        except Exception:  # absent, truncated or foreign: compute it again
            return None
        logits = saved.get("logits") if isinstance(saved, dict) and saved.get("key") == self.key else None
        shape = (len(self.x), self.k)
        if not isinstance(logits, list) or len(logits) != len(self.live) or any(t.shape[:2] != shape for t in logits):
            return None
        return logits

    def _images(self, rows: np.ndarray) -> torch.Tensor:
        """Normalised images of (image, view) rows, as the teacher sees them during training."""
        img, view = rows // self.k, rows % self.k
        x = torch.from_numpy(self.x[img])  # fancy indexing copies the rows out of the (memory-mapped) array
        if self.params is not None:
            x = warp(x, self.params[torch.from_numpy(img), torch.from_numpy(view)])
        return normalize(x, self.data.mean, self.data.std)

    # ------------------------------------------------------------------ serving

    def view_of(self, idx: np.ndarray, epoch: int) -> np.ndarray:
        """Which view each image ``idx`` trains on in ``epoch`` (1-based): every view equally often, seeded order."""
        return (epoch - 1 + self.offset[idx]) % self.k

    def views(self, xb: torch.Tensor, idx: np.ndarray, epoch: int, params: torch.Tensor | None) -> torch.Tensor:
        """``fit``'s views hook: the images to train on, and the cache told which rows the teacher call is about."""
        self.build()
        view = self.view_of(idx, epoch)
        if self.mode == "views":
            xb = warp(xb, self.params[torch.from_numpy(idx), torch.from_numpy(view)])
        elif params is not None:  # unaugmented: the student keeps the fresh augmentation the live run would draw
            xb = warp(xb, params)
        rows = torch.from_numpy(idx * self.k + view)
        self._pending = (rows, _fingerprint(normalize(xb, self.data.mean, self.data.std)))
        self._served = set()
        return xb

    def take(self, teacher: int, x: torch.Tensor) -> torch.Tensor | None:
        """Cached logits of teacher ``teacher`` for input ``x`` if ``x`` is the pending batch, else None (go live)."""
        if self._pending is None or self.logits is None or teacher in self._served:
            return None
        rows, fp = self._pending
        if len(rows) != len(x) or abs(_fingerprint(x) - fp) > 1e-3 * max(1.0, abs(fp)):
            return None
        self._served.add(teacher)
        self.stats["hits"] += 1
        return self.logits[teacher].view(-1, self.logits[teacher].shape[-1])[rows].to(x.device)

    def teachers(self) -> list[CachedTeacher]:
        return [CachedTeacher(self, i, t) for i, t in enumerate(self.live)]

    def summary(self) -> dict:
        """What goes into the student's metadata and the stage notes."""
        return {"mode": self.mode, "views": self.k, **self.stats}


class CachedTeacher(nn.Module):
    """Stands in for a teacher: cached logits for the batch being trained on, the live teacher for anything else."""

    def __init__(self, cache: TeacherCache, index: int, live: nn.Module):
        super().__init__()
        self.cache, self.index, self.live = cache, index, live

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.cache.take(self.index, x)
        if out is None:
            self.cache.stats["live_calls"] += 1
            return self.live(x)
        return out


def _fingerprint(x: torch.Tensor) -> float:
    """A cheap check that the teacher is called on the batch the cache prepared (same values, any memory layout)."""
    return float(x.detach().double().sum()) + float(x.detach().double().abs().sum()) * 1e-3


def cache_for(
    cfg: TeacherCacheConfig,
    teachers: list[nn.Module],
    data: SplitData,
    aug: AugmentConfig,
    seed: int,
    device: str,
    teacher_layers: list[str],
    note: Callable[[str], None],
    store: Path | None = None,
    ident: dict | None = None,
) -> TeacherCache | None:
    """The stage's cache, or None when it is off or cannot apply (say why in a note)."""
    if not cfg.enabled or not teachers:
        return None
    if teacher_layers:
        note(f"teacher_cache: loss terms need teacher features ({', '.join(teacher_layers)}); using the live teacher")
        return None
    return TeacherCache(cfg, teachers, data, aug, seed, device, store if cfg.reuse else None, ident)


def views_of(module: nn.Module) -> Callable | None:
    """The views hook of the cache behind a DistillModule's teachers, if they are cached (for ``fit``)."""
    teachers = getattr(module, "_teachers", None) or []
    caches = {id(t.cache): t.cache for t in teachers if isinstance(t, CachedTeacher)}
    if len(caches) > 1:
        raise ConfigError("a module's teachers come from different teacher caches")
    return next(iter(caches.values())).views if caches else None

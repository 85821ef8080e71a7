"""Turn a source into a fixed, seeded train/val/test split with normalisation statistics, and iterate batches."""

from __future__ import annotations

import json
import math
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgekd.core.array_checks import check_real_array, read_real_array
from edgekd.core.errors import DataError
from edgekd.core.fsutil import atomic_path, ensure_free_space
from edgekd.core.npzfile import check_npz
from edgekd.data.sources import FITS, SOURCES, RawData

SPLITS = ("train", "val", "test")


@dataclass
class SplitData:
    """Images as float32 [0, 1] N x C x H x W per split, plus what travels with every model trained on them."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    labels: list[str]
    mean: list[float]
    std: list[float]
    # preprocessing facts beyond the defaults (``fit`` when not stretch; ``normalization: pretrained``): they travel
    # into every model's metadata. Stored in the .npz only when there are any, so default data keeps its bytes.
    facts: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        x = self.arrays["train"][0]
        return (1, *x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def meta(self) -> dict:
        """Metadata every model trained on this data carries: layout, shape, normalisation, labels."""
        return {
            "input_layout": "NCHW",
            "input_shape": list(self.input_shape),
            "mean": self.mean,
            "std": self.std,
            "labels": self.labels,
            **self.facts,
        }

    def calibration(self, n: int, seed: int) -> np.ndarray:
        """``n`` normalised training images picked with ``seed``: the representative set for int8 calibration."""
        x = self.arrays["train"][0]
        pick = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
        mean = np.asarray(self.mean, np.float32)[None, :, None, None]
        std = np.asarray(self.std, np.float32)[None, :, None, None]
        return ((x[pick] - mean) / std).astype(np.float32)

    def save(self, path: Path) -> Path:
        """Write an uncompressed .npz (so ``load`` can memory-map it) with fixed zip timestamps (so equal data hashes
        equal, and the stages after it stay cached when the data stage re-runs)."""
        payload = {f"{k}_{s}": v for s, (x, y) in self.arrays.items() for k, v in (("x", x), ("y", y))}
        payload.update(
            labels=np.asarray(self.labels), mean=np.asarray(self.mean, np.float32), std=np.asarray(self.std, np.float32)
        )
        if self.facts:
            payload["facts"] = np.asarray(json.dumps(self.facts, sort_keys=True))
        ensure_free_space(path.parent, sum(int(v.nbytes) for v in payload.values()), f"write {path.name}")
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for name, arr in payload.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)
        return path

    @classmethod
    def load(cls, path: Path) -> SplitData:
        """Load a saved split; the image arrays are memory-mapped from the (uncompressed) .npz, not read whole."""
        check_npz(path, mapped={f"x_{s}" for s in SPLITS})
        with np.load(path, allow_pickle=False) as z:
            arrays = {s: (_npz_memmap(Path(path), f"x_{s}.npy"), read_real_array(z, f"y_{s}", path)) for s in SPLITS}
            for s, (x, _) in arrays.items():
                check_real_array(x, f"x_{s}", path)
            facts = json.loads(str(z["facts"])) if "facts" in z.files else {}
            known = {"fit": FITS, "normalization": ("pretrained",)}
            if not isinstance(facts, dict) or any(k not in known or v not in known[k] for k, v in facts.items()):
                raise DataError(f"{path}: 'facts' must be a JSON object of {sorted(known)} with known values")
            return cls(arrays, [str(v) for v in z["labels"]], z["mean"].tolist(), z["std"].tolist(), facts)


def _npz_memmap(path: Path, member: str) -> np.ndarray:
    """Memory-map one member of an uncompressed .npz (np.savez stores members uncompressed, so the bytes sit as is)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        with np.load(path, allow_pickle=False) as z:
            return z[member.removesuffix(".npy")]
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the local file header: its name and extra field lengths locate the data
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if fortran or dtype.hasobject:
        with np.load(path, allow_pickle=False) as z:
            return z[member.removesuffix(".npy")]
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, taken): ``fraction`` of every class taken, so small classes still appear in every split."""
    taken, rest = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        taken.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(taken))


def _stream_images(raw: RawData, idx: np.ndarray, path: Path, on_corrupt: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the images ``idx`` of a lazy source one at a time into a memory-mapped .npy file."""
    assert raw.files is not None and raw.reader is not None and raw.image_shape is not None
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(idx), *raw.image_shape))
    keep = []
    for row, i in enumerate(idx):
        try:
            x[row] = raw.reader(raw.files[i])
        except DataError as exc:
            if on_corrupt == "fail":
                raise
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        keep.append(row)
    y = raw.y[idx]
    if len(keep) < len(idx):  # skipped files: compact into a smaller file, a chunk at a time
        small = np.lib.format.open_memmap(
            path.with_suffix(".kept.npy"), mode="w+", dtype=np.float32, shape=(len(keep), *raw.image_shape)
        )
        for start in range(0, len(keep), 1024):
            rows = keep[start : start + 1024]
            small[start : start + len(rows)] = x[rows]
        x, y = small, y[keep]
    x.flush()
    return x, y


def _channel_stats(x: np.ndarray, chunk_bytes: int = 8 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std, a chunk at a time (the array may be a memory map larger than memory)."""
    chunk = max(1, chunk_bytes // max(1, x[:1].nbytes * 2))
    total = np.zeros(x.shape[1])
    sq = np.zeros(x.shape[1])
    for i in range(0, len(x), chunk):
        block = np.asarray(x[i : i + chunk], dtype=np.float64)
        total += block.sum(axis=(0, 2, 3))
        sq += (block**2).sum(axis=(0, 2, 3))
    n = len(x) * x.shape[2] * x.shape[3]
    mean = total / n
    return mean, np.sqrt(np.maximum(sq / n - mean**2, 0.0))


def build_splits(cfg, work_dir: Path | None = None) -> SplitData:
    """Load the configured source and split it with a fixed seed (``cfg.split_seed``), independent of training seeds.

    Lazy sources (image folders) are streamed into memory-mapped files under ``work_dir`` (a temporary folder when
    not given), so only one image is decoded at a time.
    """
    raw = SOURCES.get(cfg.source)(cfg)
    rng = np.random.default_rng(cfg.split_seed)
    given = raw.splits or {}
    n = len(raw.y)
    rest = np.arange(n)
    index: dict[str, np.ndarray] = {}
    if raw.file_splits is not None:  # already split on disk: those splits as they are, the missing ones from train
        for split in ("val", "test"):
            if (raw.file_splits == split).any():
                index[split] = np.flatnonzero(raw.file_splits == split)
        rest = np.flatnonzero(raw.file_splits == "train")
    for split, frac in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        if split in given or split in index:
            continue
        # a fraction of the whole data set, taken from what is left
        keep, taken = _stratified_split(raw.y[rest], frac * n / max(len(rest), 1), rng)
        index[split], rest = rest[taken], rest[keep]
    index["train"] = rest
    if raw.files is not None and work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="edgekd-data-"))
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        if split in given:
            arrays[split] = given[split]
        elif raw.x is None:
            assert work_dir is not None
            work_dir.mkdir(parents=True, exist_ok=True)
            arrays[split] = _stream_images(raw, index[split], work_dir / f"x_{split}.npy", cfg.on_corrupt)
        else:
            arrays[split] = (raw.x[index[split]], raw.y[index[split]])
    for split in SPLITS:
        if len(arrays[split][1]) == 0:
            raise DataError(f"the {split} split is empty: add data or change data.{split}_fraction")
    if cfg.labels is not None:
        if len(cfg.labels) != len(raw.labels):
            raise DataError(f"data.labels has {len(cfg.labels)} names but the data has {len(raw.labels)} classes")
        raw.labels = list(cfg.labels)
    xtr = arrays["train"][0]
    m, sd = _channel_stats(xtr)
    mean = cfg.mean or m.round(6).tolist()
    std = cfg.std or np.maximum(sd, 1e-6).round(6).tolist()
    if len(mean) != xtr.shape[1] or len(std) != xtr.shape[1]:
        raise DataError(f"data.mean/std need {xtr.shape[1]} values (one per channel)")
    ordered = {s: (arrays[s][0].astype(np.float32, copy=False), arrays[s][1].astype(np.int64)) for s in SPLITS}
    facts = {"fit": cfg.fit} if cfg.fit != "stretch" else {}
    if cfg.normalization == "pretrained" and cfg.mean is not None:  # set by the loader (edgekd.core.loader)
        facts["normalization"] = "pretrained"
    return SplitData(ordered, raw.labels, [float(v) for v in mean], [float(v) for v in std], facts)


def normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: float, max_rotate_deg: float) -> torch.Tensor:
    """Light, label-preserving augmentation: a random shift (pixels) and rotation per image, in one affine warp."""
    return warp(x, draw_augment(len(x), x.shape[2], gen, max_shift, max_rotate_deg))


def draw_augment(
    n: int,
    size: int,
    gen: torch.Generator,
    max_shift: float,
    max_rotate_deg: float,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    hflip: bool = False,
) -> torch.Tensor:
    """The random part of ``augment``: per image (angle in radians, x shift, y shift in grid units), n x 3; with a
    random-resized crop or flips, four more columns (x scale with the flip's sign, y scale, crop centre x, y): n x 7.
    Off, nothing more is drawn, so the random stream of a pipeline without them is what it always was.

    Separate from the warp so that a draw can be stored and replayed (cached teacher views) or made for a whole batch
    and then split between processes (distributed training sees the views one process would).
    """
    ang = (torch.rand(n, generator=gen) * 2 - 1) * (max_rotate_deg * torch.pi / 180)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift / size)
    cols = [ang[:, None], shift]
    if tuple(crop_scale) != (1.0, 1.0) or hflip:
        lo, hi = crop_scale
        area = lo + (hi - lo) * torch.rand(n, generator=gen)
        ratio = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log(4 / 3))
        sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        centre = (torch.rand(n, 2, generator=gen) * 2 - 1) * (1 - torch.stack([sx, sy], 1))  # the crop stays inside
        flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
        cols += [(sx * flip)[:, None], sy[:, None], centre]
    return torch.cat(cols, 1)


def warp(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply drawn augmentation ``params`` (from ``draw_augment``) to images ``x``."""
    ang, shift = params[:, 0], params[:, 1:3]
    cos, sin = torch.cos(ang), torch.sin(ang)
    if params.shape[1] == 7:  # rotation after the crop's scale (and mirror), centred on the crop
        sx, sy, cx, cy = params[:, 3], params[:, 4], params[:, 5] + shift[:, 0], params[:, 6] + shift[:, 1]
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, cx], 1), torch.stack([sin * sx, cos * sy, cy], 1)], 1)
    else:
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, gen: torch.Generator | None, shuffle: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) batches; the order comes from ``gen`` so a seeded run sees the same batches."""
    n = len(y)
    order = (torch.randperm(n, generator=gen) if shuffle else torch.arange(n)).numpy()
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        # fancy indexing copies just this batch out of a (possibly memory-mapped, read-only) array
        yield torch.from_numpy(x[idx]), torch.from_numpy(y[idx])

"""Dataset sources: the bundled digits, an image-folder tree and NumPy ``.npz`` arrays.

Each source returns images as float32 in [0, 1], layout N x C x H x W at the configured size, integer labels and class
names. Splitting, normalisation statistics and augmentation are shared and live elsewhere.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgekd.core.array_checks import read_real_array
from edgekd.core.errors import DataError
from edgekd.core.npzfile import check_npz
from edgekd.core.registry import Registry

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
MAX_CLASSES = 100_000  # labels are class indices: a label of 2**62 must not become a list of 2**62 class names
MAX_IMAGE_PIXELS = 64_000_000  # width x height of one image file, checked from its header before decoding
SOURCES: Registry = Registry("data source")


@dataclass
class RawData:
    x: np.ndarray | None  # float32 (N, C, H, W) in [0, 1]; None for a lazy source (see ``files``)
    y: np.ndarray  # int64 (N,)
    labels: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # pre-split data (npz with x_val, ...)
    # A lazy source (image folders): images are read one at a time when the splits are written, so a folder larger
    # than memory streams to disk instead of being loaded whole.
    files: list[Path] | None = None
    reader: Callable[[Path], np.ndarray] | None = None
    image_shape: tuple[int, int, int] | None = None
    # A lazy source already split (train/ val/ test/ folders, a list with a split column): each file's split
    file_splits: np.ndarray | None = None


def resize(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize (antialiased when shrinking) of an N x C x H x W float array to size x size (or (H, W)).

    The same filter as PIL's BILINEAR resize of a float ("F") image (equal within ~1.5e-5 on [0, 1] pixels), which is
    how the standalone example app in examples/ reproduces it without torch.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if x.shape[-2:] == hw:
        return x.astype(np.float32)
    t = torch.from_numpy(x.astype(np.float32))
    out = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0).numpy()


FITS = ("stretch", "center_crop", "letterbox")


def fit(x: np.ndarray, size: int | tuple[int, int], how: str = "stretch") -> np.ndarray:
    """N x C x H x W [0, 1] images to size x size (or (H, W)) by :func:`resize`: ``stretch`` resizes both sides;
    ``center_crop`` scales the shorter side to the size and cuts the centre; ``letterbox`` scales the longer side to
    the size and centres the image on black (0) borders. Equal aspects: all three are the same resize."""
    if how not in FITS:
        raise ValueError(f"unknown fit {how!r}; expected one of {', '.join(FITS)}")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = x.shape[-2:]
    if how == "stretch" or h * hw[1] == w * hw[0]:
        return resize(x, hw)
    s = max(hw[0] / h, hw[1] / w) if how == "center_crop" else min(hw[0] / h, hw[1] / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if how == "center_crop":
        nh, nw = max(nh, hw[0]), max(nw, hw[1])
        top, left = (nh - hw[0]) // 2, (nw - hw[1]) // 2
        return np.ascontiguousarray(resize(x, (nh, nw))[..., top : top + hw[0], left : left + hw[1]])
    nh, nw = min(nh, hw[0]), min(nw, hw[1])
    out = np.zeros((*x.shape[:-2], *hw), np.float32)
    top, left = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    out[..., top : top + nh, left : left + nw] = resize(x, (nh, nw))
    return out


@SOURCES.register("digits")
def load_digits_source(cfg) -> RawData:
    """scikit-learn's handwritten digits: 1,797 real 8x8 greyscale images, 10 classes, shipped with the package."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    return RawData(resize(x, cfg.image_size), d.target.astype(np.int64), [str(i) for i in range(10)])


SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _pixels(im, channels: int) -> np.ndarray:
    """H x W (grey) or H x W x 3 (RGB) float32 in [0, 1], the same for every file mode: 8-bit modes through PIL's
    conversions (alpha dropped, palettes expanded, as torchvision's loader does); 16-bit greyscale (PNG, TIFF) scaled
    by 65535 instead of PIL's clip at 255, which would turn most of such a photo white."""
    if im.mode in SIXTEEN_BIT:
        grey = np.clip(np.asarray(im, dtype=np.float32), 0, 65535) / 65535.0
        return grey if channels == 1 else np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0


def load_image(path: Path, channels: int, size: int | tuple[int, int], how: str = "stretch") -> np.ndarray:
    """One image file -> float32 C x H x W in [0, 1]: the single-image preprocessing of training and of inference.

    Decode, convert to grey (PIL mode "L") or RGB (16-bit greyscale: see :func:`_pixels`), scale to [0, 1], then
    :func:`fit` the float image to the size (``how``: stretch, center_crop or letterbox). The image
    folder source and ``edgekd predict`` both call this; exported models record these steps in their metadata.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns past 89 MP and raises past 179 MP while opening: both become the one refusal below
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"{im.size[0]}x{im.size[1]} pixels")
                arr = _pixels(im, channels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\d+x\d+ pixels|\d+ pixels", str(exc))
        raise DataError(
            f"image '{path}' declares {found.group(0) if found else 'too many pixels'}, over edgekd's limit of "
            f"{MAX_IMAGE_PIXELS // 10**6} megapixels for one image (a decompression bomb, or a photo to shrink first)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"corrupt or unreadable image '{path}': {str(exc).splitlines()[0][:120]}") from None
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return fit(arr[None], size, how)[0]


SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _presplit(root: Path) -> dict[str, Path] | None:
    """``root/{train,val,test}/<class>/<image>`` (``valid``/``validation`` for val; test optional): split -> folder."""
    subdirs = _class_dirs(root)
    if "train" not in subdirs or not set(subdirs) <= set(SPLIT_FOLDERS):
        return None
    return {SPLIT_FOLDERS[d]: root / d for d in subdirs}


@SOURCES.register("folder")
def load_folder_source(cfg) -> RawData:
    """An image-folder tree: ``root/<class name>/<image>``, or already split as ``root/train/<class>/<image>`` with
    ``val/`` (or ``valid/``, ``validation/``) and optionally ``test/`` beside it, the layout of ImageNet, Kaggle and
    most exports. Classes are sorted by name (across the splits); a split that is not there is drawn from train."""
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset folder '{root}' does not exist")
    folders = _presplit(root) or {"": root}
    classes = sorted({c for folder in folders.values() for c in _class_dirs(folder)})
    if not classes:
        raise DataError(f"dataset folder '{root}' has no class subfolders (expected root/<class>/<image>)")
    paths: list[Path] = []
    ys: list[int] = []
    splits: list[str] = []
    for split, folder in folders.items():
        for idx, name in enumerate(classes):
            files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files and (split in ("", "train") or (folder / name).is_dir()):
                raise DataError(f"class folder '{folder / name}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += files
            ys += [idx] * len(files)
            splits += [split or "any"] * len(files)
    return RawData(
        None,
        np.asarray(ys, dtype=np.int64),
        classes,
        files=paths,
        reader=lambda p: load_image(p, cfg.channels, cfg.image_size, cfg.fit),
        image_shape=(cfg.channels, cfg.image_size, cfg.image_size),
        file_splits=None if "" in folders else np.asarray(splits),
    )


@SOURCES.register("list")
def load_list_source(cfg) -> RawData:
    """A list of images: ``.csv`` with a header ``path,label`` (optional ``split``: train / val / test) or ``.json``
    (a list of ``{"path", "label", "split"?}``). Paths are relative to the list's folder; labels are class names,
    sorted."""
    import csv
    import json

    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"image list '{path}' does not exist")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(f"image list '{path}' is not readable CSV/JSON: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"image list '{path}' holds no rows (expected path,label[,split])")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("path") or row.get("label") in (None, ""):
            raise DataError(f"image list '{path}', row {i + 1}: needs 'path' and 'label'")
        if row.get("split") not in (None, "", "train", "val", "test"):
            raise DataError(f"image list '{path}', row {i + 1}: split '{row['split']}' is not train, val or test")
    classes = sorted({str(r["label"]) for r in rows})
    if len(classes) > MAX_CLASSES:
        raise DataError(f"image list '{path}' names {len(classes):,} classes; edgekd handles at most {MAX_CLASSES:,}")
    index = {c: i for i, c in enumerate(classes)}
    has_splits = any(r.get("split") for r in rows)
    return RawData(
        None,
        np.asarray([index[str(r["label"])] for r in rows], dtype=np.int64),
        classes,
        files=[(path.parent / str(r["path"])).expanduser() for r in rows],
        reader=lambda p: load_image(p, cfg.channels, cfg.image_size, cfg.fit),
        image_shape=(cfg.channels, cfg.image_size, cfg.image_size),
        file_splits=np.asarray([r.get("split") or "train" for r in rows]) if has_splits else None,
    )


def _npz_images(arr: np.ndarray, name: str, path: Path, channels: int | None) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"array '{name}' in '{path}' is not numeric (dtype {arr.dtype})")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DataError(f"array '{name}' in '{path}' must be N x H x W or N x C x H x W (got shape {arr.shape})")
    if arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if channels is not None and arr.shape[1] != channels:
        raise DataError(f"array '{name}' in '{path}' has {arr.shape[1]} channels, the config says {channels}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"array '{name}' in '{path}' contains NaN or Inf values")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise DataError(
            f"array '{name}' in '{path}' must hold uint8 or floats in [0, 1] (found {arr.min():.3g}..{arr.max():.3g})"
        )
    return arr


def _npz_labels(arr: np.ndarray, name: str, path: Path) -> np.ndarray:
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"array '{name}' in '{path}' must be a 1-D integer array of labels (got {arr.dtype} {arr.shape})"
        )
    if arr.size == 0:
        raise DataError(f"array '{name}' in '{path}' holds no labels")
    if arr.max() >= MAX_CLASSES:
        raise DataError(
            f"array '{name}' in '{path}' has label {arr.max()}: labels are class indices 0..K-1 and edgekd handles "
            f"at most {MAX_CLASSES:,} classes"
        )
    return arr.astype(np.int64)


@SOURCES.register("npz")
def load_npz_source(cfg) -> RawData:
    """``.npz`` with ``x`` (images) and ``y`` (labels); optional ``x_val/y_val``, ``x_test/y_test``, ``labels``."""
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"npz file '{path}' does not exist")
    check_npz(path)  # declared sizes first: a small file may inflate to gigabytes
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file: {str(exc)[:120]}") from None
    with npz:
        if "x" not in npz or "y" not in npz:
            raise DataError(f"npz file '{path}' must contain arrays 'x' and 'y' (found {', '.join(npz.files)})")
        x = fit(_npz_images(read_real_array(npz, "x", path), "x", path, cfg.channels), cfg.image_size, cfg.fit)
        y = _npz_labels(read_real_array(npz, "y", path), "y", path)
        if len(x) != len(y):
            raise DataError(f"npz file '{path}': 'x' has {len(x)} images but 'y' has {len(y)} labels")
        splits = {}
        for split in ("val", "test"):
            if f"x_{split}" in npz:
                if f"y_{split}" not in npz:
                    raise DataError(f"npz file '{path}' has 'x_{split}' but no 'y_{split}' labels")
                xs = read_real_array(npz, f"x_{split}", path)
                xs = fit(_npz_images(xs, f"x_{split}", path, cfg.channels), cfg.image_size, cfg.fit)
                splits[split] = (xs, _npz_labels(read_real_array(npz, f"y_{split}", path), f"y_{split}", path))
        n_classes = int(max([y.max()] + [s[1].max() for s in splits.values()])) + 1
        labels = [str(v) for v in npz["labels"]] if "labels" in npz else [str(i) for i in range(n_classes)]
    if len(labels) > MAX_CLASSES:
        raise DataError(
            f"array 'labels' in '{path}' names {len(labels):,} classes; edgekd handles at most {MAX_CLASSES:,}"
        )
    for name, lab in [("y", y)] + [(f"y_{k}", v[1]) for k, v in splits.items()]:
        if lab.min() < 0 or lab.max() >= len(labels):
            raise DataError(f"array '{name}' in '{path}' has labels outside 0..{len(labels) - 1}")
    return RawData(x, y, labels, splits or None)

"""A procedural RGB photo set, for trying the photo pipeline where no photo data set can be downloaded: synthetic,
and said to be so everywhere it is used.

Ten classes of shapes (the class is the outline only) drawn in a random colour, at a random scale (a fifth to
four fifths of the image), position and rotation, over a textured background of another random colour, among
clutter strokes and blobs that may cover part of the shape, then blurred and noised. One image in ten is hard on
purpose (small shapes, low contrast with the background, heavy clutter), so a trained teacher does not reach 100 %.
Written as ``root/{train,val,test}/<class>/<n>.png``: the pre-split layout edgekd's folder source reads as it is.
Deterministic for a seed (numpy's PCG64 and PIL's drawing: the same files on every machine).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

CLASSES = (
    "circle",
    "ring",
    "square",
    "diamond",
    "triangle",
    "pentagon",
    "hexagon",
    "star",
    "cross",
    "crescent",
)
SPLITS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _polygon(n: int, r: float, cx: float, cy: float, angle: float, inner: float | None = None) -> list[tuple]:
    pts = []
    steps = 2 * n if inner else n
    for k in range(steps):
        rad = inner * r if inner and k % 2 else r
        a = angle + 2 * math.pi * k / steps
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(draw, name: str, cx: float, cy: float, r: float, angle: float, color: tuple, bg: tuple) -> None:
    if name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=bg)
    elif name == "square":
        draw.polygon(_polygon(4, r, cx, cy, angle + math.pi / 4), fill=color)
    elif name == "diamond":
        pts = _polygon(4, r, cx, cy, angle)
        pts = [(cx + (x - cx) * (0.6 if k % 2 else 1.0), cy + (y - cy) * (0.6 if k % 2 else 1.0)) for k, (x, y) in
               enumerate(pts)]  # fmt: skip
        draw.polygon(pts, fill=color)
    elif name == "triangle":
        draw.polygon(_polygon(3, r, cx, cy, angle), fill=color)
    elif name == "pentagon":
        draw.polygon(_polygon(5, r, cx, cy, angle), fill=color)
    elif name == "hexagon":
        draw.polygon(_polygon(6, r, cx, cy, angle), fill=color)
    elif name == "star":
        draw.polygon(_polygon(5, r, cx, cy, angle, inner=0.45), fill=color)
    elif name == "cross":
        w = 0.3 * r
        for a in (angle, angle + math.pi / 2):
            dx, dy, nx, ny = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)
            draw.polygon([(cx + dx * r + nx * w, cy + dy * r + ny * w), (cx + dx * r - nx * w, cy + dy * r - ny * w),
                          (cx - dx * r - nx * w, cy - dy * r - ny * w), (cx - dx * r + nx * w, cy - dy * r + ny * w)],
                         fill=color)  # fmt: skip
    elif name == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        ox, oy = cx + 0.45 * r * math.cos(angle), cy + 0.45 * r * math.sin(angle)
        draw.ellipse([ox - 0.85 * r, oy - 0.85 * r, ox + 0.85 * r, oy + 0.85 * r], fill=bg)
    else:  # pragma: no cover - CLASSES lists every name above
        raise ValueError(name)


def _color(rng: np.random.Generator, avoid: np.ndarray | None = None, min_dist: float = 0.0) -> np.ndarray:
    for _ in range(20):
        c = rng.integers(0, 256, 3)
        if avoid is None or np.abs(c - avoid).sum() >= min_dist:
            return c
    return c


def render(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One H x W x 3 uint8 image of shape ``name``."""
    from PIL import Image, ImageDraw, ImageFilter

    bg = _color(rng)
    hard = rng.random() < 0.1  # low contrast, small, or heavily cluttered
    fg = _color(rng, bg, 80 if hard else 250)
    # textured background: a colour gradient plus coarse noise
    yy, xx = np.mgrid[0:size, 0:size] / size
    tilt = rng.uniform(-40, 40, 3)
    base = bg[None, None] + tilt[None, None] * (xx[..., None] - 0.5) + tilt[::-1][None, None] * (yy[..., None] - 0.5)
    coarse = rng.normal(0, 12, (size // 8 + 1, size // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:size, :size]
    img = Image.fromarray(np.clip(base + coarse, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    scale = rng.uniform(0.15, 0.25) if hard and rng.random() < 0.5 else rng.uniform(0.25, 0.42)
    r = scale * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    clutter = int(rng.integers(5, 9) if hard else rng.integers(0, 4))
    under = clutter // 2
    for k in range(clutter):  # half the clutter under the shape, half over it
        if k == under:
            _draw_shape(draw, name, cx, cy, r, rng.uniform(0, 2 * math.pi), tuple(int(v) for v in fg), tuple(int(v)
                        for v in bg))  # fmt: skip
        c = tuple(int(v) for v in _color(rng))
        if rng.random() < 0.6:
            pts = [tuple(rng.uniform(0, size, 2)) for _ in range(2)]
            draw.line(pts, fill=c, width=int(rng.integers(1, max(2, size // 24))))
        else:
            x, y, s = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 30, size / 10)
            draw.ellipse([x - s, y - s, x + s, y + s], fill=c)
    if clutter == under:
        _draw_shape(draw, name, cx, cy, r, rng.uniform(0, 2 * math.pi), tuple(int(v) for v in fg), tuple(int(v)
                    for v in bg))  # fmt: skip
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, size / 96)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(2, 10), (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def make_photos(root: str | Path, per_class: int = 300, size: int = 64, seed: int = 0) -> dict[str, int]:
    """Write ``per_class`` images of each class, split 70/15/15 into train/val/test; returns the counts per split."""
    from PIL import Image

    if per_class < 7:
        raise ValueError("per_class must be at least 7 (every split needs an image of every class)")
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(SPLITS, 0)
    for name in CLASSES:
        n_val = n_test = max(1, round(per_class * SPLITS["val"]))
        sizes = {"train": per_class - n_val - n_test, "val": n_val, "test": n_test}
        for split, n in sizes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(render(name, size, rng)).save(folder / f"{i:05d}.png", optimize=False)
            counts[split] += n
    return counts

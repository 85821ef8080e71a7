"""Data as users have it, each layout made here as real files: class folders already split into train/ val/ test/
(or train/ valid/), a CSV or JSON list of path,label[,split], and RGB / RGBA / palette / greyscale / 16-bit files
mixed in one folder, converted the same way every time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgekd.core.config import DataConfig
from edgekd.core.errors import DataError
from edgekd.data import build_splits
from edgekd.data.sources import load_image


def _images(folder, n, seed, size=(12, 10)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(folder / f"{seed}_{i}.png")


def test_presplit_train_val_test_folders_keep_their_splits(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for k, c in enumerate(("cat", "dog", "eel")):
            _images(tmp_path / split / c, n, seed=100 * k + n)
    data = build_splits(DataConfig(source="folder", path=str(tmp_path), image_size=8))
    assert data.labels == ["cat", "dog", "eel"]
    assert {s: len(data.arrays[s][1]) for s in ("train", "val", "test")} == {"train": 18, "val": 6, "test": 9}
    assert sorted(np.bincount(data.arrays["test"][1]).tolist()) == [3, 3, 3]
    assert data.arrays["train"][0].shape[1:] == (3, 8, 8)


def test_train_and_valid_only_draws_test_from_train(tmp_path):
    for split, n in (("train", 20), ("valid", 4)):
        for k, c in enumerate(("a", "b")):
            _images(tmp_path / split / c, n, seed=10 * k + n)
    data = build_splits(DataConfig(source="folder", path=str(tmp_path), image_size=8, test_fraction=0.2))
    sizes = {s: len(data.arrays[s][1]) for s in ("train", "val", "test")}
    assert sizes["val"] == 8 and sizes["train"] + sizes["test"] == 40 and 8 <= sizes["test"] <= 10


def test_a_class_missing_from_val_is_allowed_an_empty_one_is_not(tmp_path):
    _images(tmp_path / "train" / "a", 6, 1)
    _images(tmp_path / "train" / "b", 6, 2)
    _images(tmp_path / "val" / "a", 2, 3)  # no val/b: fine, that split just lacks the class
    assert build_splits(DataConfig(source="folder", path=str(tmp_path), image_size=8)).labels == ["a", "b"]
    (tmp_path / "val" / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder '.*val/b' has no images"):
        build_splits(DataConfig(source="folder", path=str(tmp_path), image_size=8))


def test_csv_list_with_a_split_column(tmp_path):
    rows = ["path,label,split"]
    for k, c in enumerate(("ship", "car")):
        _images(tmp_path / "img" / c, 8, seed=k)
        files = sorted((tmp_path / "img" / c).glob("*.png"))
        rows += [f"img/{c}/{f.name},{c},{'test' if i < 2 else 'train'}" for i, f in enumerate(files)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = build_splits(DataConfig(source="list", path=str(tmp_path / "labels.csv"), image_size=8, val_fraction=0.25))
    assert data.labels == ["car", "ship"]  # class names, sorted
    assert len(data.arrays["test"][1]) == 4 and len(data.arrays["val"][1]) == 4 and len(data.arrays["train"][1]) == 8


def test_json_list_without_splits_is_split_by_the_seed(tmp_path):
    _images(tmp_path / "x", 20, seed=5)
    files = sorted((tmp_path / "x").glob("*.png"))
    (tmp_path / "l.json").write_text(json.dumps([{"path": f"x/{f.name}", "label": i % 2} for i, f in enumerate(files)]))
    data = build_splits(DataConfig(source="list", path=str(tmp_path / "l.json"), image_size=8))
    assert data.labels == ["0", "1"] and sum(len(data.arrays[s][1]) for s in ("train", "val", "test")) == 20


def test_bad_list_rows_are_one_line(tmp_path):
    (tmp_path / "l.csv").write_text("path,label\na.png,\n")
    with pytest.raises(DataError, match=r"row 1: needs 'path' and 'label'"):
        build_splits(DataConfig(source="list", path=str(tmp_path / "l.csv")))
    (tmp_path / "l.csv").write_text("path,label,split\na.png,x,holdout\n")
    with pytest.raises(DataError, match=r"split 'holdout' is not train, val or test"):
        build_splits(DataConfig(source="list", path=str(tmp_path / "l.csv")))


def test_mixed_modes_convert_deterministically(tmp_path):
    """One scene saved as RGB, RGBA, palette, 8-bit grey and 16-bit grey: the same picture every time, and the
    16-bit file scaled by 65535 (PIL's own conversion clips it at 255: a white image)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((16, 16), 128, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "p.png")
    grey8 = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(grey8).save(tmp_path / "l.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "l16.png")  # the same grey, 16-bit
    assert Image.open(tmp_path / "l16.png").mode in ("I;16", "I")
    base = load_image(tmp_path / "rgb.png", 3, 16)
    assert np.array_equal(load_image(tmp_path / "rgba.png", 3, 16), base)  # alpha dropped
    assert np.abs(load_image(tmp_path / "p.png", 3, 16) - base).max() < 0.1  # palette: quantised colours
    grey = load_image(tmp_path / "l.png", 1, 16)
    assert np.abs(load_image(tmp_path / "l16.png", 1, 16) - grey).max() < 1e-6
    assert np.abs(load_image(tmp_path / "l16.png", 3, 16) - np.repeat(grey, 3, 0)).max() < 1e-6
    assert np.array_equal(load_image(tmp_path / "l16.png", 3, 16), load_image(tmp_path / "l16.png", 3, 16))

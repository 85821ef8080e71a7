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


def test_fit_policies_on_a_wide_image():
    from edgekd.data.sources import fit

    x = np.zeros((1, 1, 16, 32), np.float32)
    x[..., :, 8:24] = 1.0  # a white band in the middle half of the columns
    stretch, crop, box = (fit(x, 16, how) for how in ("stretch", "center_crop", "letterbox"))
    assert stretch.shape == crop.shape == box.shape == (1, 1, 16, 16)
    assert np.allclose(crop, 1.0, atol=1e-6)  # the centre 16x16 is all band
    assert np.allclose(box[..., :4, :], 0) and np.allclose(box[..., 12:, :], 0)  # black bars above and below
    assert np.allclose(box[..., 4:12, 5:11], 1.0, atol=1e-6) and np.allclose(box[..., 4:12, :3], 0, atol=1e-6)
    assert np.allclose(stretch[..., 5:11], 1.0, atol=1e-6) and np.allclose(stretch[..., :3], 0, atol=1e-6)
    square = np.random.default_rng(0).random((2, 3, 20, 20), dtype=np.float32)
    assert all(np.array_equal(fit(square, 10, h), fit(square, 10, "stretch")) for h in ("center_crop", "letterbox"))


def test_fit_travels_from_the_data_to_the_metadata_and_predict(tmp_path):
    """data.fit: letterbox is applied to every image, saved with the dataset, written into an exported model's
    metadata (key and step) and used again by edgekd predict on a new photo."""
    from pathlib import Path

    from edgekd.data.dataset import SplitData
    from edgekd.formats.metadata import preprocessing
    from edgekd.formats.predict import preprocess

    for k, c in enumerate(("a", "b")):
        _images(tmp_path / "photos" / c, 8, seed=k, size=(24, 12))  # 24 wide, 12 high
    cfg = DataConfig(source="folder", path=str(tmp_path / "photos"), image_size=12, fit="letterbox")
    data = build_splits(cfg)
    assert data.facts == {"fit": "letterbox"} and data.meta()["fit"] == "letterbox"
    x = data.arrays["train"][0]
    assert np.allclose(x[:, :, :3, :], 0) and np.allclose(x[:, :, 9:, :], 0)  # letterboxed: 6 rows of image
    loaded = SplitData.load(data.save(tmp_path / "d.npz"))
    assert loaded.facts == {"fit": "letterbox"}
    plain = build_splits(DataConfig(source="folder", path=str(tmp_path / "photos"), image_size=12))
    assert plain.facts == {} and "facts" not in np.load(plain.save(tmp_path / "p.npz")).files  # default bytes kept
    pre = preprocessing(3, 12, 12, fit="letterbox")
    assert pre["fit"] == "letterbox" and any("centre it on a black (0) 12x12 canvas" in s for s in pre["steps"])
    photo = next(Path(tmp_path / "photos" / "a").iterdir())
    md = {"input_shape": [1, 3, 12, 12], "preprocessing": pre}
    assert np.array_equal(preprocess([photo], md)[0], load_image(photo, 3, 12, "letterbox"))


def test_hostile_dataset_facts_are_refused(tmp_path):
    from edgekd.data.dataset import SplitData

    data = build_splits(DataConfig(source="digits", image_size=8))
    data.facts = {"fit": "letterbox"}
    path = data.save(tmp_path / "d.npz")
    z = dict(np.load(path))
    z["facts"] = np.asarray(json.dumps({"fit": "__import__('os')"}))
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(DataError, match="'facts' must be a JSON object"):
        SplitData.load(tmp_path / "bad.npz")


def test_pretrained_library_models_bring_their_normalisation(tmp_path):
    """normalization: auto takes the mean/std a pretrained timm model was trained with (ImageNet's for ResNet);
    given data.mean/std or no pretrained model keep the train split's; 'pretrained' without such a model is an
    error."""
    pytest.importorskip("timm")
    import timm
    import torch

    from edgekd.core.errors import ConfigError
    from edgekd.core.loader import validate_document

    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), tmp_path / "w.pth")
    teacher = {"stage": "teacher", "model": {"timm": "resnet10t", "pretrained": str(tmp_path / "w.pth")}}
    data = {"source": "folder", "path": str(tmp_path), "image_size": 32}
    cfg = validate_document({"name": "n", "data": data, "stages": [teacher]})
    assert cfg.data.mean == pytest.approx([0.485, 0.456, 0.406]) and cfg.data.std == pytest.approx(
        [0.229, 0.224, 0.225]
    )
    assert cfg.data.normalization == "pretrained"
    # the data stage says so, and how to keep the train split's statistics for weights trained otherwise
    from types import SimpleNamespace

    from edgekd.data.synthetic import make_photos
    from edgekd.stages.data import DataStageConfig, run_data

    make_photos(tmp_path / "photos", per_class=7, size=32, seed=0)
    photos = validate_document({"name": "n", "data": {**data, "path": str(tmp_path / "photos")}, "stages": [teacher]})
    notes: list[str] = []
    (tmp_path / "out").mkdir()
    run_data(DataStageConfig(stage="data", **photos.data.model_dump()), SimpleNamespace(out_dir=tmp_path / "out",
             note=notes.append), {})  # fmt: skip
    assert any("[0.485, 0.456, 0.406]" in n and "data.normalization: train_split" in n for n in notes), notes
    given = validate_document(
        {"name": "n", "data": {**data, "mean": [0.5] * 3, "std": [0.25] * 3}, "stages": [teacher]}
    )
    assert given.data.mean == [0.5] * 3
    scratch = {"stage": "teacher", "model": {"timm": "resnet10t"}}
    assert validate_document({"name": "n", "data": data, "stages": [scratch]}).data.mean is None
    with pytest.raises(ConfigError, match="normalization: pretrained needs a timm or torchvision model"):
        validate_document({"name": "n", "data": {**data, "normalization": "pretrained"}, "stages": [scratch]})

import numpy as np
import pytest
from PIL import Image

from edgekd.core.config import DataConfig
from edgekd.core.errors import DataError
from edgekd.data import SplitData, augment, build_splits


def test_digits_split_is_fixed_stratified_and_complete():
    a = build_splits(DataConfig(image_size=16))
    b = build_splits(DataConfig(image_size=16))
    sizes = {s: len(a.arrays[s][1]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(0.2 * 1797, abs=10)
    for s in ("train", "val", "test"):
        assert np.array_equal(a.arrays[s][1], b.arrays[s][1])
        assert set(a.arrays[s][1]) == set(range(10))
    x = a.arrays["train"][0]
    assert x.shape[1:] == (1, 16, 16) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert a.meta()["input_layout"] == "NCHW" and a.meta()["labels"] == [str(i) for i in range(10)]
    assert (
        build_splits(DataConfig(image_size=16, split_seed=1)).arrays["test"][1].tolist() != a.arrays["test"][1].tolist()
    )


def test_split_round_trips_through_npz(tmp_path):
    a = build_splits(DataConfig(image_size=8))
    b = SplitData.load(a.save(tmp_path / "d.npz"))
    assert b.labels == a.labels and b.mean == pytest.approx(a.mean)
    assert np.array_equal(a.arrays["val"][0], b.arrays["val"][0])


def _make_folder(root, classes=("cat", "dog"), n=6, mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 255, size=(10, 12, 3) if mode == "RGB" else (10, 12), dtype=np.uint8)
            Image.fromarray(arr, mode=None).save(root / c / f"{i}.png")
    return root


def test_image_folder_source(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    d = build_splits(DataConfig(source="folder", path=str(root), image_size=8, val_fraction=0.2, test_fraction=0.2))
    assert d.labels == ["cat", "dog"]
    assert d.arrays["train"][0].shape[1:] == (3, 8, 8)
    assert sum(len(d.arrays[s][1]) for s in ("train", "val", "test")) == 12


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_splits(DataConfig(source="folder", path=str(tmp_path / "missing")))
    root = _make_folder(tmp_path / "imgs")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder '.*empty' has no images"):
        build_splits(DataConfig(source="folder", path=str(root)))


def test_corrupt_image_fails_or_is_skipped_as_configured(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"corrupt or unreadable image '.*broken.png'"):
        build_splits(DataConfig(source="folder", path=str(root), image_size=8))
    with pytest.warns(UserWarning, match="broken.png"):
        d = build_splits(
            DataConfig(
                source="folder", path=str(root), image_size=8, on_corrupt="skip", val_fraction=0.2, test_fraction=0.2
            )
        )
    assert sum(len(d.arrays[s][1]) for s in ("train", "val", "test")) == 12


def test_npz_source_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(60, 8, 8), dtype=np.uint8)
    y = np.arange(60) % 3
    np.savez(tmp_path / "ok.npz", x=x, y=y, labels=np.array(["a", "b", "c"]))
    d = build_splits(DataConfig(source="npz", path=str(tmp_path / "ok.npz"), image_size=8))
    assert d.labels == ["a", "b", "c"] and d.arrays["train"][0].shape[1:] == (1, 8, 8)

    bad = x.astype(np.float32) / 255
    bad[3, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad, y=y)
    with pytest.raises(DataError, match=r"array 'x' in '.*nan.npz' contains NaN"):
        build_splits(DataConfig(source="npz", path=str(tmp_path / "nan.npz")))
    np.savez(tmp_path / "lab.npz", x=x, y=y, labels=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"array 'y' .* labels outside 0..1"):
        build_splits(DataConfig(source="npz", path=str(tmp_path / "lab.npz")))
    np.savez(tmp_path / "nox.npz", images=x, y=y)
    with pytest.raises(DataError, match="must contain arrays 'x' and 'y'"):
        build_splits(DataConfig(source="npz", path=str(tmp_path / "nox.npz")))


def test_augmentation_is_seeded_and_keeps_shape():
    import torch

    x = torch.rand(4, 1, 16, 16)
    a = augment(x, torch.Generator().manual_seed(1), 2, 10)
    b = augment(x, torch.Generator().manual_seed(1), 2, 10)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_saved_split_is_memory_mapped_and_deterministic(tmp_path):
    a = build_splits(DataConfig(image_size=8))
    p1, p2 = a.save(tmp_path / "a.npz"), a.save(tmp_path / "b.npz")
    assert p1.read_bytes() == p2.read_bytes()
    b = SplitData.load(p1)
    assert isinstance(b.arrays["train"][0], np.memmap)
    assert np.array_equal(b.arrays["train"][0], a.arrays["train"][0])


def test_image_folder_is_streamed_to_disk_not_loaded_whole(tmp_path, monkeypatch):
    """Images are decoded one at a time into memory-mapped files: peak memory does not grow with the folder."""
    import tracemalloc

    root = _make_folder(tmp_path / "imgs", n=200)
    decoded = 400 * 3 * 128 * 128 * 4  # 78 MB of float32 pixels once decoded
    tracemalloc.start()
    d = build_splits(
        DataConfig(source="folder", path=str(root), image_size=128, val_fraction=0.2, test_fraction=0.2),
        tmp_path / "work",
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < decoded / 3, f"peak {peak / 2**20:.0f} MB of {decoded / 2**20:.0f} MB decoded"
    for split in ("train", "val", "test"):
        assert isinstance(d.arrays[split][0], np.memmap)
        assert (tmp_path / "work" / f"x_{split}.npy").is_file()
    assert sum(len(d.arrays[s][1]) for s in ("train", "val", "test")) == 400

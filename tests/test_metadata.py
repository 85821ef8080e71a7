"""Exported files describe themselves: what is stored where, that readers find it, that it changes no output."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _exported import MODELS, exported_run, write_digit_pngs

from edgekd.data.sources import load_image
from edgekd.formats.metadata import read_metadata
from edgekd.formats.runner import load_runner
from edgekd.formats.tflite.metadata import associated_files, metadata_entries


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.mark.parametrize("variant", sorted(MODELS))
def test_exported_file_carries_its_metadata(run, variant):
    _, arts = run
    art = arts[MODELS[variant]]
    md = read_metadata(art.path)
    data_meta = arts["dataset"].meta
    assert md["labels"] == data_meta["labels"] == [str(i) for i in range(10)]
    if variant.startswith("onnx"):  # PyTorch's input: grey NCHW
        assert md["mean"] == pytest.approx(data_meta["mean"]) and md["std"] == pytest.approx(data_meta["std"])
        assert md["input_shape"] == [1, 1, 8, 8] and md["input_layout"] == "NCHW"
        assert md["preprocessing"]["color_mode"] == "L" and "grey_from_rgb" not in md
    else:  # what app tooling takes: NHWC RGB, made grey inside the file, with the grey statistics per channel
        assert md["mean"] == pytest.approx(data_meta["mean"] * 3) and md["std"] == pytest.approx(data_meta["std"] * 3)
        assert md["input_shape"] == [1, 3, 8, 8] and md["input_layout"] == "NHWC" and md["grey_from_rgb"]
        assert md["preprocessing"]["color_mode"] == "RGB" and md["input"]["shape"] == [1, 8, 8, 3]
    assert md["precision"] == art.meta["precision"] == variant.split("-")[1]
    assert md["preprocessing"]["size"] == [8, 8]
    assert md["input"]["dtype"] == "float32" and md["input_quantization"] is None  # float I/O around an int8 graph
    assert md["output"]["shape"][-1] == 10
    # the pipeline hash is the cache key of the stage that wrote the file, as its manifest records it
    manifest = json.loads((Path(art.path).parent / "manifest.json").read_text())
    assert md["pipeline_hash"] == manifest["key"] and len(md["pipeline_hash"]) == 64
    assert md["edgekd_version"] and md["pipeline"] == "exported"


@pytest.mark.parametrize("variant", ["tflite-fp32", "tflite-int8"])
def test_tflite_has_standard_metadata_and_packed_labels(run, variant):
    data = Path(run[1][MODELS[variant]].path).read_bytes()
    entries = metadata_entries(data)
    assert {"edgekd", "TFLITE_METADATA"} <= set(entries)
    assert entries["TFLITE_METADATA"][4:8] == b"M001"  # TFLite Support's ModelMetadata file identifier
    assert associated_files(data) == {"labels.txt": b"0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n"}


def _strip_tflite(data: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = [m for m in model.metadata if m.name not in (b"edgekd", b"TFLITE_METADATA")]
    b = flatbuffers.Builder(len(data))
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("variant", sorted(MODELS))
def test_metadata_changes_no_output(run, variant, tmp_path):
    """The same file without the metadata gives bit-identical outputs in its runtime."""
    art = run[1][MODELS[variant]]
    bare = tmp_path / Path(art.path).name
    if variant.startswith("tflite"):
        bare.write_bytes(_strip_tflite(Path(art.path).read_bytes()))
        assert not associated_files(bare.read_bytes()) and "edgekd" not in metadata_entries(bare.read_bytes())
    else:
        import onnx

        m = onnx.load(str(art.path))
        del m.metadata_props[:]
        onnx.save(m, str(bare))
    assert read_metadata(bare) is None
    md = read_metadata(art.path)
    x = np.load(run[1]["dataset"].path)["x_test"][:64]
    np.testing.assert_array_equal(load_runner(art.path, md).predict(x), load_runner(bare, md).predict(x))


def test_folder_source_and_predict_share_one_image_loader(tmp_path):
    """An RGB image of another size goes through the same function whether it is training data or a query."""
    from PIL import Image

    from edgekd.core.config import DataConfig
    from edgekd.data.sources import load_folder_source

    (tmp_path / "cat").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(tmp_path / "cat" / "a.png")
    raw = load_folder_source(DataConfig(source="folder", path=str(tmp_path), image_size=16))
    x = raw.reader(raw.files[0])
    np.testing.assert_array_equal(x, load_image(tmp_path / "cat" / "a.png", 3, 16))
    assert x.shape == (3, 16, 16) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1


def test_digit_png_preprocessing_reproduces_the_training_images(tmp_path):
    """A digit saved as an 8-bit PNG and loaded for inference is the training image up to 8-bit rounding."""
    from sklearn.datasets import load_digits

    png = write_digit_pngs(tmp_path, 1)[0]
    train_view = (load_digits().images[-1] / 16.0).astype(np.float32)
    np.testing.assert_allclose(load_image(png, 1, 8)[0], train_view, atol=0.5 / 255 + 1e-6)


@pytest.mark.skipif(
    not os.environ.get("EDGEKD_TFLITE_SUPPORT_PYTHON"),
    reason="set EDGEKD_TFLITE_SUPPORT_PYTHON to a Python with tflite-support installed (it pins protobuf 3.20, so it "
    "cannot live in edgekd's environment)",
)
def test_tflite_support_reads_our_standard_metadata(run):
    path = run[1][MODELS["tflite-int8"]].path
    code = (
        "import sys, json; from tflite_support import metadata as m; "
        "d = m.MetadataDisplayer.with_model_file(sys.argv[1]); "
        "print(json.dumps({'md': json.loads(d.get_metadata_json()), 'files': d.get_packed_associated_file_list(), "
        "'labels': d.get_associated_file_buffer('labels.txt').decode()}))"
    )
    out = subprocess.run(
        [os.environ["EDGEKD_TFLITE_SUPPORT_PYTHON"], "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["files"] == ["labels.txt"] and got["labels"].split() == [str(i) for i in range(10)]
    sub = got["md"]["subgraph_metadata"][0]
    norm = sub["input_tensor_metadata"][0]["process_units"][0]["options"]
    md = read_metadata(path)
    assert norm["mean"][0] == pytest.approx(255 * md["mean"][0], rel=1e-5)
    assert norm["std"][0] == pytest.approx(255 * md["std"][0], rel=1e-5)
    assert sub["output_tensor_metadata"][0]["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"

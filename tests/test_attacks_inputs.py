"""Unbounded and malformed inputs, as an attacker sends them: YAML alias bombs, huge YAML, huge integers, .npz deflate
bombs, a label of 2**62, PNG decompression bombs, declared shapes of 100000 x 100000, malformed model metadata and
manifests, ONNX external data outside the model's folder. Each is refused with one line naming the file, in bounded
time and memory (tests/_attack.py), and never hangs, exhausts memory or prints a traceback.

Through the real CLI where the CLI adds something (the whole path from argument to refusal); the variants of one
mechanism are checked in-process.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from _attack import assert_refused, edgekd, snapshot
from _shared import tiny_pipeline_doc

from edgekd.core.errors import ConfigError, DataError, ModelError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --------------------------------------------------------------------------- builders


def _zero_deflate(prefix: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, built in milliseconds: after a full flush the
    compressor starts afresh, so every 1 MiB block of zeros compresses to the same bytes and is repeated."""
    chunk = 1 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    rest = tail.compress(b"\0" * (zeros % chunk)) + tail.flush()
    return head + block * (zeros // chunk) + rest


def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip written by hand from (name, deflated data, crc, uncompressed size): the sizes are whatever we declare."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size in members:
        offset = len(out)
        fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + name.encode() + data
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, offset) + name.encode()
    n = len(members)
    path.write_bytes(
        bytes(out + central) + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    )
    return path


def _member(name: str, arr: np.ndarray) -> tuple[str, bytes, int, int]:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    raw = buf.getvalue()
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return name, c.compress(raw) + c.flush(), zlib.crc32(raw), len(raw)


def npz_bomb(path: Path, **extra: np.ndarray) -> Path:
    """A ~4 MB .npz whose 'x' inflates to 4,000,000,000 bytes of float32 zeros (shape 1000 x 1000 x 1000)."""
    header = _npy_header((1000, 1000, 1000))
    size = len(header) + 4 * 10**9
    bomb = ("x.npy", _zero_deflate(header, 4 * 10**9), 0, size)  # CRC left 0: checked only after inflating it all
    return _zip(path, [bomb] + [_member(f"{k}.npy", v) for k, v in extra.items()])


def png_bomb(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid greyscale PNG of width x height zero pixels (900 MP by default) in about 1 MB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))

    raw = height * (width + 1)  # a filter byte per row
    idat = b"\x78\xda" + _zero_deflate(b"", raw) + struct.pack(">L", ((raw % 65521) << 16) | 1)  # adler32 of zeros
    ihdr = struct.pack(">2L5B", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def onnx_model(path: Path, shape=(1, 1, 8, 8), meta: dict | str | None = None, external: str | None = None) -> Path:
    """x * s -> global average pool -> flatten: one output class. ``meta``: the edgekd metadata (a dict is attached as
    edgekd writes it, a string stored raw); ``external``: keep ``s`` in that external-data location."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = numpy_helper.from_array(np.ones(1, np.float32), "s")
    if external is not None:
        s = TensorProto(name="s", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
        s.external_data.add(key="location", value=external)
        s.external_data.add(key="length", value="4")
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"]),
        helper.make_node("GlobalAveragePool", ["m"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shape[1]])],
        [s],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    if isinstance(meta, str):
        model.metadata_props.add(key="edgekd", value=meta)
    onnx.save(model, str(path))
    if isinstance(meta, dict):
        from edgekd.formats.metadata import attach_metadata

        attach_metadata(path, meta)
    return path


META = {"input_shape": [1, 1, 8, 8], "input_layout": "NCHW", "labels": ["a"], "mean": [0.5], "std": [0.25]}
HUGE = [1, 1, 100000, 100000]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Shared inputs: a good model with metadata, a good eval set and image, the bombs."""
    root = tmp_path_factory.mktemp("attacks")
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "ok.png")
    np.savez(root / "eval.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    return {
        "root": root,
        "model": onnx_model(root / "model.onnx", meta=META),
        "png": root / "ok.png",
        "eval": root / "eval.npz",
        "npz_bomb": npz_bomb(root / "bomb.npz", y=np.zeros(1000, np.int64)),
        "png_bomb": png_bomb(root / "bomb.png"),
    }


def _pipeline(tmp: Path, text: str = "", **data) -> Path:
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:1]
    doc["data"].update(data)
    path = tmp / "p.yaml"
    path.write_text(text or json.dumps(doc) + "\n")
    return path


LOL = "".join(
    f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "lol"] * 9) + "]\n" for i in range(9)
)  # 9**9 = 387 million strings once expanded


def _lol_pipeline(tmp: Path) -> Path:
    return _pipeline(
        tmp,
        "name: lol\ndata: {source: digits, image_size: 8}\nstages:\n  - stage: teacher\n    model:\n"
        "      name: tiny_cnn\n      kwargs:\n" + LOL.replace("  l", "        l") + "    train: {epochs: 1}\n",
    )


# --------------------------------------------------------------------------- 1a. YAML


def test_billion_laughs_in_stage_kwargs_is_refused_by_validate(tmp_path):
    res = edgekd("validate", str(_lol_pipeline(tmp_path)), cwd=tmp_path, timeout=60)
    assert_refused(res, r"p\.yaml:\d+: stages\[0\]\.model\.kwargs\.l\d", r"more than 100,000 values", code=2)


def test_billion_laughs_through_set_is_refused_before_run(tmp_path):
    lol = "{" + LOL.strip().replace("\n", ", ").replace("  ", "") + "}"
    res = edgekd("run", str(_pipeline(tmp_path)), "--set", f"teacher.model.kwargs.x={lol}", cwd=tmp_path, timeout=60)
    assert_refused(res, r"--set teacher\.model\.kwargs\.x: l\d", r"more than 100,000 values", code=2)
    assert not (tmp_path / "runs").exists()


def test_a_50_mb_yaml_list_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "w") as fh:
        fh.write("stages: [")
        fh.write("0, " * (50 * 2**20 // 3))
        fh.write("]\n")
    res = edgekd("validate", str(path), cwd=tmp_path, timeout=60)
    assert_refused(res, r"big\.yaml' is larger than 1 MB", code=2)
    assert res.seconds < 30


def test_a_5000_digit_integer_in_yaml_names_the_key(tmp_path):
    path = _pipeline(tmp_path, "name: big\nseed: " + "9" * 5000 + "\nstages:\n  - stage: teacher\n")
    res = edgekd("validate", str(path), cwd=tmp_path, timeout=60)
    assert_refused(res, r"p\.yaml:2: seed: an integer of 5,000 digits is too large", code=2)


def test_a_5000_digit_integer_through_set_names_the_key(tmp_path):
    res = edgekd("run", str(_pipeline(tmp_path)), "--set", "seed=" + "7" * 5000, cwd=tmp_path, timeout=60)
    assert_refused(res, r"--set seed: an integer of 5,000 digits", code=2)
    assert len(res.last_line) < 300


def _nested(kind: str, depth: int = 9, width: int = 10) -> str:
    """Anchors nested ``depth`` deep, each ``width`` uses of the one before, as mappings or (inside a list) lists."""
    if kind == "mappings":
        lines = ["a0: &a0 {" + ", ".join(f"k{j}: x" for j in range(width)) + "}"]
        lines += [
            f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}" for i in range(1, depth)
        ]
        return "\n".join(lines) + "\n"
    lines = ["top:", "  inner:", "    - &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"    - &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


YAML_BOMBS = {
    "nested-mappings": (_nested("mappings"), r"w\.yaml:\d+: a\d: the YAML expands to more than 100,000 values"),
    "deep-lists": (_nested("lists", depth=6), r"w\.yaml:\d+: top\.inner\[\d\]: the YAML expands"),
    "too-many-nodes": (
        "base: &b {" + ", ".join(f"k{i}: [{', '.join(['1'] * 400)}]" for i in range(300)) + "}\nx: {<<: *b}\n",
        r"holds more than 100,000 values",  # one big flow mapping: composing stops at the limit
    ),
    "recursive-alias": ("a: &a [x, *a]\n", r"w\.yaml:1: a\[1\]: a YAML alias refers to a value containing it"),
    "bad-int-tag": ("k: !!int 12abc\n", r"w\.yaml: malformed YAML value"),
    "hex-int": ("k: 0x" + "f" * 200 + "\n", r"w\.yaml:1: k: an integer of 200 digits"),
}


@pytest.mark.parametrize("case", sorted(YAML_BOMBS))
def test_yaml_bombs_are_one_config_error(tmp_path, case):
    from edgekd.core.validation import load_yaml

    text, pattern = YAML_BOMBS[case]
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as exc:
        load_yaml(path)
    assert "\n" not in str(exc.value)


def test_shipped_pipelines_and_profiles_are_far_inside_the_limits():
    from _shared import ROOT

    from edgekd.core.validation import load_yaml
    from edgekd.core.yamlfile import MAX_YAML_BYTES, MAX_YAML_VALUES, check_expanded

    files = sorted((ROOT / "pipelines").rglob("*.yaml")) + sorted((ROOT / "devices").glob("*.yaml"))
    assert files
    for path in files:
        assert path.stat().st_size < MAX_YAML_BYTES / 100
        assert check_expanded(load_yaml(path)[1], str(path)) < MAX_YAML_VALUES / 100


def test_device_profile_yaml_is_bounded_too(tmp_path):
    from edgekd.edge.profiles import load_profile

    bomb = tmp_path / "board.yaml"
    bomb.write_text("transport: local\nx:\n" + LOL)
    with pytest.raises(ConfigError, match=r"board\.yaml:\d+: x\.l\d: the YAML expands"):
        load_profile(str(bomb))
    big = tmp_path / "big.yaml"
    big.write_text("transport: local\n#" + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"device profile '.*big\.yaml' is larger than 1 MB"):
        load_profile(str(big))


# --------------------------------------------------------------------------- 1b/1c. npz bombs, huge labels


def test_npz_deflate_bomb_as_pipeline_data_is_refused_unread(tmp_path, lab):
    res = edgekd("run", str(_pipeline(tmp_path, source="npz", path=str(lab["npz_bomb"]))), cwd=tmp_path, timeout=120)
    assert_refused(res, r"bomb\.npz': array 'x' \(shape \(1000, 1000, 1000\) float32\) would take 3,815 MB", code=1)
    assert "EDGEKD_MAX_ARRAY_MB" in res.last_line


def test_npz_deflate_bomb_as_bench_data_is_refused_unread(tmp_path, lab):
    res = edgekd("bench", str(lab["model"]), "--data", str(lab["npz_bomb"]), "--runs", "1", cwd=tmp_path, timeout=120)
    assert_refused(res, r"bomb\.npz': array 'x' .* would take 3,815 MB in memory", code=1)


def test_every_npz_reader_checks_declared_sizes(tmp_path, lab, monkeypatch):
    from edgekd.core.artifacts import Artifact
    from edgekd.core.npzfile import check_npz
    from edgekd.data.dataset import SplitData
    from edgekd.formats.runner import agent
    from edgekd.text.io import load_array

    bomb = lab["npz_bomb"]
    with pytest.raises(DataError, match=r"bomb\.npz': array 'x'"):
        load_array(Artifact("tokens", bomb, {}), "x")
    with pytest.raises(agent().AgentError, match=r"bomb\.npz: 'x\.npy' would take 3,815 MB"):
        agent()._load_eval(bomb)
    # the .npy header lies: 10**12 elements declared, a few bytes stored (numpy would allocate 4 TB first)
    header = _npy_header((10**12,), "<i8")
    liar = _zip(
        tmp_path / "liar.npz",
        [("y_train.npy", _zero_deflate(header, 16), zlib.crc32(header + bytes(16)), len(header) + 16)],
    )
    with pytest.raises(DataError, match=r"liar\.npz': array 'y_train' \(shape \(1000000000000,\) int64\)"):
        SplitData.load(liar)
    with pytest.raises(DataError, match=r"is not a readable \.npz"):
        check_npz(_zip(tmp_path / "cut.npz", [("x.npy", b"\0" * 10, 0, 10)]))
    # the limit follows EDGEKD_MAX_ARRAY_MB; memory-mapped image arrays of edgekd's own splits never count
    split = SplitData(
        {s: (np.zeros((64, 1, 32, 32), np.float32), np.zeros(64, np.int64)) for s in ("train", "val", "test")},
        ["a"], [0.5], [0.25],
    )  # fmt: skip
    saved = split.save(tmp_path / "dataset.npz")
    monkeypatch.setenv("EDGEKD_MAX_ARRAY_MB", "0.1")  # 104 KB: each x_* is 256 KB
    assert SplitData.load(saved).arrays["train"][0].shape == (64, 1, 32, 32)
    with pytest.raises(DataError, match=r"array 'x_\w+' .* loads at most 0.1 MB"):
        check_npz(saved)
    monkeypatch.setenv("EDGEKD_MAX_ARRAY_MB", "lots")
    with pytest.raises(DataError, match=r"EDGEKD_MAX_ARRAY_MB='lots' must be a positive number"):
        check_npz(lab["eval"])


def test_a_label_of_2_to_the_62_is_refused_not_allocated(tmp_path):
    x = np.zeros((40, 8, 8), np.float32)
    y = np.arange(40) % 4
    y[3] = 2**62
    np.savez(tmp_path / "d.npz", x=x, y=y)
    res = edgekd("run", str(_pipeline(tmp_path, source="npz", path=str(tmp_path / "d.npz"))), cwd=tmp_path)
    assert_refused(res, r"array 'y' in '.*d\.npz' has label 4611686018427387904: .* at most 100,000 classes", code=1)


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"y_val": np.full(3, 10**6)}, r"array 'y_val' in '.*' has label 1000000"),
        ({"y_val": None}, r"has 'x_val' but no 'y_val' labels"),
        ({"y": np.zeros(0, np.int64)}, r"array 'y' in '.*' holds no labels"),
        ({"labels": np.arange(100_001).astype(str)}, r"array 'labels' in '.*' names 100,001 classes"),
    ],
    ids=["huge-val-label", "missing-y-val", "empty-labels", "too-many-names"],
)
def test_npz_labels_are_bounded(tmp_path, arrays, pattern):
    from types import SimpleNamespace

    from edgekd.data.sources import load_npz_source

    data = {"x": np.zeros((8, 8, 8), np.float32), "y": np.arange(8) % 2, "x_val": np.zeros((3, 8, 8), np.float32),
            "y_val": np.zeros(3, np.int64)}  # fmt: skip
    data.update(arrays)
    np.savez(tmp_path / "d.npz", **{k: v for k, v in data.items() if v is not None})
    with pytest.raises(DataError, match=pattern):
        load_npz_source(SimpleNamespace(path=str(tmp_path / "d.npz"), channels=None, image_size=8, fit="stretch"))


# --------------------------------------------------------------------------- 1d. image bombs


def test_png_bomb_through_predict_is_refused_undecoded(tmp_path, lab):
    res = edgekd("predict", str(lab["model"]), str(lab["png_bomb"]), cwd=tmp_path, timeout=60)
    assert_refused(res, r"image '.*bomb\.png' declares 900000000 pixels, over edgekd's limit of 64 megapixels", code=1)


@pytest.mark.parametrize("size", [(30000, 30000), (10000, 10000), (9000, 8000)], ids=["179MP+", "89MP+", "64MP+"])
def test_image_bombs_are_one_data_error_whatever_pil_says(tmp_path, size):
    """Past 179 MP PIL raises, past 89 MP it warns, past 64 MP it is silent: the same refusal each time."""
    import warnings

    from edgekd.data.sources import load_folder_source, load_image

    cls = tmp_path / "root" / "a"
    cls.mkdir(parents=True)
    bomb = png_bomb(cls / "bomb.png", *size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning escapes
        with pytest.raises(DataError, match=r"image '.*bomb\.png' declares \d+(x\d+)? pixels, over .* 64 megapixels"):
            load_image(bomb, 3, 8)
    from types import SimpleNamespace

    raw = load_folder_source(SimpleNamespace(path=str(tmp_path / "root"), channels=1, image_size=8, fit="stretch"))
    with pytest.raises(DataError, match=r"bomb\.png' declares"):
        raw.reader(raw.files[0])


# --------------------------------------------------------------------------- 1e. declared shapes


def test_onnx_declaring_a_100000x100000_input_is_refused_by_predict(tmp_path, lab):
    model = onnx_model(tmp_path / "wide.onnx", shape=HUGE)
    res = edgekd("predict", str(model), str(lab["png"]), "--mean", "0", "--std", "1", "--labels", "a,b", cwd=tmp_path)
    assert_refused(res, r"wide\.onnx: input 'x' shape \[1, 1, 100000, 100000\] has 10,000,000,000 elements", code=1)


def test_inspect_describes_a_100000x100000_input_without_allocating(tmp_path):
    model = onnx_model(tmp_path / "wide.onnx", shape=HUGE)
    res = edgekd("inspect", str(model), "--json", cwd=tmp_path, timeout=60)
    assert res.code == 0 and not res.timed_out, res.describe()
    assert json.loads(res.stdout)["inputs"][0]["shape"] == HUGE
    assert res.peak_rss < 1.1 * 2**30


@pytest.mark.parametrize("command", ["predict", "inspect", "bench"])
def test_metadata_declaring_100000x100000_is_refused(tmp_path, lab, command):
    model = onnx_model(tmp_path / "m.onnx", meta=json.dumps({**META, "input_shape": HUGE}))
    args = {"predict": [str(lab["png"])], "inspect": [], "bench": ["--data", str(lab["eval"]), "--runs", "1"]}
    res = edgekd(command, str(model), *args[command], cwd=tmp_path, timeout=60)
    assert_refused(res, r"m\.onnx: edgekd metadata 'input_shape' \[1, 1, 100000, 100000\] has 10,000,000,000", code=1)


def test_bench_meta_json_declaring_100000x100000_is_refused(tmp_path, lab):
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({**META, "input_shape": HUGE}))
    res = edgekd("bench", str(lab["model"]), "--meta", str(meta), "--data", str(lab["eval"]), cwd=tmp_path)
    assert_refused(res, r"metadata .*m\.json: edgekd metadata 'input_shape' \[1, 1, 100000, 100000\]", code=1)


@pytest.mark.parametrize(
    "shape, pattern",
    [
        (HUGE, r"has 10,000,000,000 elements"),
        ([1, 1, -8, 8], r"must hold positive integers"),
        ([1] * 9, r"must have 1 to 8 dimensions"),
        ([1, True, 8, 8], r"must be a list of positive integers"),
        ("1x1x8x8", r"must be a list of positive integers"),
        ([2**70, 1, 1, 1], r"has 1,180,591,620,717,411,303,424 elements"),
    ],
)
def test_one_shape_check_for_edgekd_and_the_agent(shape, pattern):
    from edgekd.formats.metadata import check_input_shape
    from edgekd.formats.runner import agent

    with pytest.raises(ModelError, match=pattern):
        check_input_shape(shape, "f.onnx: shape")
    meta = {"input_shape": shape, "input_layout": "NCHW"}
    with pytest.raises(agent().AgentError, match=r"f\.onnx: meta input_shape"):
        agent()._check_meta(meta, "f.onnx")
    assert check_input_shape([1, 3, 224, 224], "ok") == [1, 3, 224, 224]


def test_agent_bounds_a_text_models_length():
    from edgekd.formats.runner import agent

    with pytest.raises(agent().AgentError, match=r"max_length must be an integer from 3 to 100000"):
        agent()._check_meta({"task": "text-embedding", "max_length": 10**9, "vocab": ["a"]}, "t.onnx")


# --------------------------------------------------------------------------- 2a. malformed metadata


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ("[1, 2, 3]", r"the edgekd metadata must be a JSON object, got list"),
        ('"just a string"', r"must be a JSON object, got str"),
        ("{not json", r"'edgekd' metadata is not valid JSON"),
        (json.dumps({k: v for k, v in META.items() if k != "input_shape"}), r"'input_shape' must be \[1, C, H, W\]"),
        (json.dumps({**META, "input_shape": "1x1x8x8"}), r"'input_shape' must be a list of positive integers"),
        (json.dumps({**META, "input_shape": [1, 1, -8, 8]}), r"'input_shape' must hold positive integers"),
        (json.dumps({**META, "input_shape": [1, 8, 8]}), r"'input_shape' must have 4 dimensions"),
        (json.dumps({k: v for k, v in META.items() if k != "input_layout"}), r"'input_layout' must be 'NCHW' or"),
        (json.dumps({**META, "mean": "0.5"}), r"'mean' must be a list of finite numbers"),
        (json.dumps({**META, "std": [0]}), r"'std' must be a list of finite numbers > 0"),
        (json.dumps({**META, "labels": [1, 2]}), r"'labels' must be a list of strings"),
        (json.dumps({**META, "preprocessing": {"scale": "x"}}), r"'preprocessing' must be an object"),
        (json.dumps({**META, "task": "world-domination"}), r"'task' must be 'image-classification' or"),
        (json.dumps({"task": "text-embedding", "max_length": "128"}), r"'max_length' must be an integer from 3"),
        ('{"input_shape": [' + "9" * 5000 + "]}", r"'edgekd' metadata is not valid JSON"),
    ],
    ids=["list", "string", "not-json", "no-shape", "shape-str", "negative", "rank-3", "no-layout", "mean-str",
         "std-zero", "labels-int", "preprocessing", "task", "text-length", "5000-digits"],
)  # fmt: skip
def test_malformed_metadata_is_one_model_error_naming_file_and_key(tmp_path, raw, pattern):
    from edgekd.formats.metadata import read_metadata

    model = onnx_model(tmp_path / "m.onnx", meta=raw)
    with pytest.raises(ModelError, match=r"m\.onnx: .*" + pattern) as exc:
        read_metadata(model)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400


@pytest.mark.parametrize("command", ["inspect", "predict"])
def test_malformed_metadata_through_the_cli(tmp_path, lab, command):
    model = onnx_model(tmp_path / "m.onnx", meta=json.dumps({**META, "input_shape": [1, "8", None]}))
    res = edgekd(command, str(model), *([str(lab["png"])] if command == "predict" else []), cwd=tmp_path)
    assert_refused(res, r"m\.onnx: edgekd metadata 'input_shape' must be a list of positive integers", code=1)


def test_predict_says_what_partial_metadata_lacks(tmp_path, lab):
    from edgekd.formats.predict import resolve_metadata

    model = onnx_model(tmp_path / "m.onnx", meta=json.dumps({"input_shape": [1, 1, 8, 8], "input_layout": "NCHW"}))
    with pytest.raises(ModelError, match=r"m\.onnx: its edgekd metadata has no mean, std, labels: give --mean"):
        resolve_metadata(model)
    assert resolve_metadata(model, [0.5], [0.25], ["a"])["labels"] == ["a"]


# --------------------------------------------------------------------------- 2b. malformed sibling manifest


def test_bench_with_a_malformed_manifest_entry_is_one_line(tmp_path, lab):
    model = onnx_model(tmp_path / "m.onnx")
    (tmp_path / "manifest.json").write_text(json.dumps({"outputs": [{"path": "m.onnx", "meta": "oops"}]}))
    res = edgekd("bench", str(model), "--data", str(lab["eval"]), cwd=tmp_path)
    assert_refused(res, r"manifest\.json: the 'meta' of m\.onnx must be a JSON object", code=1)


@pytest.mark.parametrize(
    "manifest, outcome",
    [
        ([1, 2], r"no metadata for m\.onnx: .* \(.*manifest\.json has no 'outputs' list\)"),
        ("{oops", r"no metadata for m\.onnx: .* \(.*manifest\.json is not readable JSON"),
        ({"outputs": "m.onnx"}, r"no metadata for m\.onnx: .* has no 'outputs' list"),
        ({"outputs": [1, None, {"path": "m.onnx", "meta": {**META, "input_shape": [1, 1, 0, 8]}}]},
         r"manifest\.json \(m\.onnx\): edgekd metadata 'input_shape' must hold positive integers"),
        ({"outputs": [{"path": "m.onnx", "meta": {**META, "labels": {"a": 1}}}]}, r"'labels' must be a list of str"),
        ({"outputs": [1, {"path": "m.onnx", "meta": META}]}, "found"),
        ([1, 2], "embedded"),
        ("{oops", "sidecar"),
    ],
    ids=["list", "not-json", "outputs-str", "bad-shape", "bad-labels", "junk-entries", "list+embedded", "json+sidecar"],
)  # fmt: skip
def test_find_meta_reads_or_refuses_a_malformed_manifest(tmp_path, manifest, outcome):
    from edgekd.edge.bench_inputs import find_meta

    model = onnx_model(tmp_path / "m.onnx", meta=META if outcome == "embedded" else None)
    (tmp_path / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    if outcome == "sidecar":
        (tmp_path / "m.meta.json").write_text(json.dumps(META))
    if outcome in ("found", "embedded", "sidecar"):
        assert find_meta(model)["input_shape"] == [1, 1, 8, 8]
        return
    with pytest.raises((ConfigError, ModelError), match=outcome) as exc:
        find_meta(model)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- 2c. ONNX external data


def test_inspect_refuses_external_data_outside_the_model_folder(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    model = onnx_model(folder / "m.onnx", external="../../etc/passwd")
    before = snapshot(tmp_path)
    res = edgekd("inspect", str(model), cwd=tmp_path, timeout=60)
    assert_refused(res, r"m\.onnx: tensor 's' keeps its data in '\.\./\.\./etc/passwd', outside the model's folder")
    assert snapshot(tmp_path) == before


def test_predict_refuses_external_data_at_an_absolute_path(tmp_path, lab):
    model = onnx_model(tmp_path / "m.onnx", meta=json.dumps(META), external="/etc/passwd")
    res = edgekd("predict", str(model), str(lab["png"]), cwd=tmp_path, timeout=60)
    assert_refused(res, r"m\.onnx: tensor 's' keeps its data in '/etc/passwd', outside the model's folder", code=1)


@pytest.mark.parametrize("location", ["../x.bin", "sub/../../x.bin", "/etc/hostname", "link.bin", "sub/link.bin"])
def test_external_data_escapes_are_refused(tmp_path, location):
    from edgekd.formats.inspect import inspect_file

    (tmp_path / "sub").mkdir()
    (tmp_path / "link.bin").symlink_to("/etc/hostname")
    (tmp_path / "sub" / "link.bin").symlink_to("../../outside.bin")
    model = onnx_model(tmp_path / "m.onnx", external=location)
    with pytest.raises(ModelError, match=r"m\.onnx: tensor 's' keeps its data in .* outside the model's folder"):
        inspect_file(model)


def test_external_data_inside_the_folder_still_inspects(tmp_path):
    from edgekd.formats.inspect import inspect_file

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "s.bin").write_bytes(np.ones(1, np.float32).tobytes())
    info = inspect_file(onnx_model(tmp_path / "m.onnx", external="weights/s.bin"))
    assert info["inputs"][0]["shape"] == [1, 1, 8, 8]

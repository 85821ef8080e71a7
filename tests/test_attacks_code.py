"""The attack suite, part 3: files and names that would run code, and nonsense that used to be accepted silently.

* a ``.pt2`` whose archive makes ``torch.export.load`` unpickle or eval something (devices/pt2_guard.py);
* ``transfer_packages`` / a teacher package name that would import a package to find it (edgekd/text/packages.py);
* a model ``import:`` path whose module or constructor is broken (checked by ``edgekd validate``);
* NaN / Inf weights, NaN or non-positive ``--std``, complex / object / string arrays in an ``.npz``.

Hostile payloads write the file named by ``EDGEKD_PWNED``; every test here checks it never appears. The real CLI runs
in a child (tests/_attack.py) for one or two variants of each class; the other variants call the library in-process.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _attack import PWNED_ENV, assert_refused, edgekd, snapshot
from _shared import tiny_pipeline_doc

from edgekd.core.errors import ConfigError, DataError, ModelError
from edgekd.core.loader import validate_document

PAYLOAD = f"import os; open(os.environ['{PWNED_ENV}'], 'w').write('pwned')"
META = {"input_layout": "NCHW", "input_shape": [1, 1, 8, 8], "mean": [0.0], "std": [1.0], "labels": ["a", "b", "c"]}


class _Evil:
    def __reduce__(self):
        return (exec, (PAYLOAD,))


@pytest.fixture(autouse=True)
def pwned(tmp_path, monkeypatch):
    """The marker a payload writes; it must not exist after any test (in-process or in a child)."""
    marker = tmp_path / "PWNED"
    monkeypatch.setenv(PWNED_ENV, str(marker))
    yield marker
    assert not marker.exists(), "hostile code ran"


def _two_stage_doc(**overrides) -> dict:
    doc = tiny_pipeline_doc(**overrides)
    doc["stages"] = doc["stages"][:2]
    return doc


# --------------------------------------------------------------------------- .pt2 archives


def _torch_save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    """A legit static and a dynamic-batch program from torch.export.save, and the inputs ``edgekd bench`` needs."""
    root = tmp_path_factory.mktemp("pt2")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 8, 8),)), root / "legit.pt2")
    batch = torch.export.Dim("batch", max=64)
    dyn = torch.export.export(model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(dyn, root / "dyn.pt2")
    (root / "m.json").write_text(json.dumps(META))
    np.savez(root / "eval.npz", x=np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32), y=np.arange(4) % 3)
    return root


def _craft(src: Path, dst: Path, replace=None, add=None, top=None, edit_json=None) -> Path:
    """Copy a legit archive, swapping members (``replace``), adding members under its root (``add``) or at the top
    (``top``), or editing a JSON member (``edit_json``: {member: fn(doc) -> doc})."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data = (replace or {}).get(rel, zin.read(info.filename))
            if rel in (edit_json or {}):
                data = json.dumps(edit_json[rel](json.loads(data))).encode()
            zout.writestr(info.filename, data)
        for rel, data in (add or {}).items():
            zout.writestr(f"{root}/{rel}", data)
        for name, data in (top or {}).items():
            zout.writestr(name, data)
    return dst


def _pickled_weight(doc: dict) -> dict:
    first = next(iter(doc["config"].values()))
    first["use_pickle"] = True
    return doc


def _evil_sympy(doc: dict) -> dict:
    run = f"__import__('os').system('touch ' + __import__('os').environ['{PWNED_ENV}'])"
    text = json.dumps(doc).replace("Symbol(", f"{run} or Symbol(", 1)
    return json.loads(text)


# (name, source archive, how to craft it, the refusal): the first four run through `edgekd bench` in a child
PT2_ATTACKS = [
    ("sample inputs: a torch.save pickle", "legit", dict(replace={"data/sample_inputs/model.pt": "EVIL_TS"}),
     r"sample_inputs/model\.pt' is not a weights-only pickle of tensors \(Unsupported global"),
    ("weight stored with use_pickle", "legit",
     dict(edit_json={"data/weights/model_weights_config.json": _pickled_weight},
          replace={"data/weights/weight_0": "EVIL_TS"}),
     r"is stored as a pickle, which torch loads without restriction"),
    ("torch<=2.7 layout added at the top", "legit",
     dict(top={"version": b"8.0", "serialized_state_dict.pt": "EVIL_TS", "serialized_exported_program.json": b"{}"}),
     r"member 'version' is not one torch\.export\.save writes"),
    ("sympy shape expression", "dyn", dict(edit_json={"models/model.json": _evil_sympy}),
     r"shape expression .* uses '__import__', which sympy would eval"),
    ("sample inputs: a raw protocol-2 pickle", "legit", dict(replace={"data/sample_inputs/model.pt": "EVIL_RAW"}),
     r"is not a weights-only pickle"),
    ("opaque_obj constant (pickle.loads)", "legit",
     dict(edit_json={"data/constants/model_constants_config.json": lambda d: {"config": {"c": {
         "path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}},
          add={"data/constants/opaque_obj_0": "EVIL_RAW"}),
     r"opaque_obj_0' is not one torch\.export\.save writes"),
    ("custom_obj constant without use_pickle", "legit",
     dict(edit_json={"data/constants/model_constants_config.json": lambda d: {"config": {"c": {
         "path_name": "custom_obj_0", "is_param": False, "use_pickle": False, "tensor_meta": None}}}}),
     r"points at 'custom_obj_0', not a raw tensor payload"),
    ("legacy weights file", "legit", dict(add={"data/weights/model.pt": "EVIL_TS"}),
     r"member '.*data/weights/model\.pt' is not one torch\.export\.save writes"),
    ("AOTInductor shared library", "legit", dict(add={"data/aotinductor/model/model.so": b"\x7fELF"}),
     r"data/aotinductor/model/model\.so' is not one"),
    ("f-string in a shape expression", "dyn",
     dict(edit_json={"models/model.json": lambda d: json.loads(json.dumps(d).replace(
         "Symbol(", "Symbol(f'{__import__(\\\"os\\\")}') or Symbol(", 1))}),
     r"shape expression"),
    ("sympify again through S()", "dyn",
     dict(edit_json={"models/model.json": lambda d: json.loads(json.dumps(d).replace("Symbol(", "S('1')+Symbol(", 1))}),
     r"uses 'S'"),
    ("attribute access in a shape expression", "dyn",
     dict(edit_json={"models/model.json": lambda d: json.loads(json.dumps(d).replace("Symbol(", "Symbol.func(", 1))}),
     r"uses '\.'"),
]  # fmt: skip


def _materialise(craft: dict) -> dict:
    evil = {"EVIL_TS": _torch_save({"x": _Evil()}), "EVIL_RAW": pickle.dumps(_Evil(), protocol=2)}

    def sub(d):
        return {k: evil.get(v, v) if isinstance(v, str) else v for k, v in d.items()}

    return {k: (sub(v) if k in ("replace", "add", "top") else v) for k, v in craft.items()}


@pytest.mark.parametrize("name,source,craft,refusal", PT2_ATTACKS[:4], ids=[a[0] for a in PT2_ATTACKS[:4]])
def test_hostile_pt2_through_bench_runs_no_code(pt2, tmp_path, name, source, craft, refusal):
    model = _craft(pt2 / f"{source}.pt2", tmp_path / "evil.pt2", **_materialise(craft))
    before = snapshot(pt2)
    res = edgekd("bench", str(model), "--meta", str(pt2 / "m.json"), "--data", str(pt2 / "eval.npz"),
                 "--device", "local", "--runs", "2", "--warmup", "0", cwd=tmp_path, timeout=120)  # fmt: skip
    assert_refused(res, r"evil\.pt2: refusing to load this \.pt2: ", refusal, code=1)
    assert snapshot(pt2) == before


@pytest.mark.parametrize("name,source,craft,refusal", PT2_ATTACKS[4:], ids=[a[0] for a in PT2_ATTACKS[4:]])
def test_hostile_pt2_in_process_runs_no_code(pt2, tmp_path, name, source, craft, refusal):
    from edgekd.formats.runner import agent, load_runner

    model = _craft(pt2 / f"{source}.pt2", tmp_path / "evil.pt2", **_materialise(craft))
    with pytest.raises(agent().AgentError, match=refusal) as exc:
        load_runner(model, META)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("evil.pt2: ")


def test_pt2_member_twice_or_not_a_zip_is_refused(pt2, tmp_path):
    from edgekd.formats.runner import agent, load_runner

    twice = tmp_path / "twice.pt2"
    with zipfile.ZipFile(pt2 / "legit.pt2") as zin, zipfile.ZipFile(twice, "w") as zout:
        name = next(n for n in zin.namelist() if n.endswith("sample_inputs/model.pt"))
        zout.writestr(name, _torch_save({"x": _Evil()}))  # torch reads the first copy, zipfile the last
        with pytest.warns(UserWarning, match="Duplicate name"):
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))
    with pytest.raises(agent().AgentError, match=r"appears twice"):
        load_runner(twice, META)
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(agent().AgentError, match=r"junk\.pt2: .*not a torch\.export archive"):
        load_runner(tmp_path / "junk.pt2", META)


def test_legit_pt2_files_still_load_and_run(pt2):
    from edgekd.formats.runner import load_runner

    x = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    for name in ("legit", "dyn"):
        assert load_runner(pt2 / f"{name}.pt2", META).predict(x).shape == (3, 3)
    assert torch.load is torch.serialization.load  # the guard's weights-only wrapper is gone after loading


# --------------------------------------------------------------------------- package names from YAML


@pytest.fixture
def evil_pkg(tmp_path, monkeypatch):
    """A package on the path whose __init__ runs the payload; its docstrings are harmless text."""
    root = tmp_path / "site"
    (root / "evilpkg").mkdir(parents=True)
    (root / "evilpkg" / "__init__.py").write_text(
        f'"""This package runs code when it is imported, which must never happen here."""\n{PAYLOAD}\n'
    )
    (root / "evilpkg" / "sub.py").write_text('"""A harmless sentence in a submodule of the evil package."""\n')
    monkeypatch.syspath_prepend(str(root))
    return root


def _text_doc(tmp_path: Path, packages: list[str]) -> dict:
    lines = [f"Sentence number {i} is about the quick brown fox and its friends." for i in range(60)]
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n")
    data = {"source": "file", "path": "s.txt", "transfer_packages": packages}
    # only the data stage runs: the text teacher is there (a pipeline has stages) but switched off
    return {"name": "t", "task": "text-embedding", "data": data, "stages": [{"stage": "teacher", "enabled": False}]}


def test_dotted_transfer_package_is_refused_before_anything_imports(evil_pkg, tmp_path):
    (tmp_path / "p.yaml").write_text(json.dumps(_text_doc(tmp_path, ["evilpkg.sub"])))
    res = edgekd("run", "p.yaml", "-o", "r", cwd=tmp_path, env={"PYTHONPATH": str(evil_pkg)}, timeout=60)
    assert_refused(res, r"transfer_packages\[0\]", code=2)


def test_transfer_package_is_read_from_its_files_not_imported(evil_pkg, tmp_path):
    (tmp_path / "p.yaml").write_text(json.dumps(_text_doc(tmp_path, ["evilpkg"])))
    res = edgekd("run", "p.yaml", "-o", "r", cwd=tmp_path, env={"PYTHONPATH": str(evil_pkg)}, timeout=60)
    assert res.code == 0, res.describe()
    corpus = next((tmp_path / "r").rglob("corpus.json")).read_text()
    assert "A harmless sentence in a submodule of the evil package." in corpus


@pytest.mark.parametrize("name", ["evilpkg.sub", "../evilpkg", "evilpkg/sub", "", "os.path"])
def test_library_refuses_package_names_that_would_import(evil_pkg, name):
    from edgekd.text.corpus import package_sentences
    from edgekd.text.teacher import teacher_dir

    with pytest.raises(DataError, match=r"is not a top-level package name"):
        package_sentences([name], set())
    with pytest.raises(ModelError, match=r"is not a top-level package name"):
        teacher_dir(name)


def test_teacher_package_is_located_not_imported(evil_pkg):
    from edgekd.text.teacher import teacher_dir

    with pytest.raises(ModelError, match=r"teacher package 'evilpkg' at .* lacks config\.json"):
        teacher_dir("evilpkg")


# --------------------------------------------------------------------------- model import paths at validate


USER_MODULES = {
    "missing": (None, r"cannot import module 'ekd_atk_missing' for model 'ekd_atk_missing:Net': No module named"),
    "syntax": ("class Net(\n    pass\n", r"syntax error at .*ekd_atk_syntax\.py:1: "),
    "raises": ("raise ValueError('no GPU here')\n", r"importing 'ekd_atk_raises' raised ValueError: no GPU here"),
    "ctor": (
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self, **kw):\n"
        "        raise RuntimeError('boom')\n",
        r"cannot build model 'ekd_atk_ctor:Net': RuntimeError: boom",
    ),
    "notmodule": (
        "def Net(**kw):\n    return 42\n",
        r"model 'ekd_atk_notmodule:Net' did not return a torch\.nn\.Module",
    ),
    "noattr": ("X = 1\n", r"module 'ekd_atk_noattr' has no attribute 'Net'"),
}


def _user_modules(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, (body, _) in USER_MODULES.items():
        if body is not None:
            (root / f"ekd_atk_{key}.py").write_text(body)
    return root


@pytest.mark.parametrize("key", list(USER_MODULES))
@pytest.mark.parametrize("where", ["teacher", "student"])
def test_validate_builds_user_models_and_names_what_broke(tmp_path, monkeypatch, key, where):
    monkeypatch.syspath_prepend(str(_user_modules(tmp_path / "mods")))
    doc = _two_stage_doc()
    spec = {"import": f"ekd_atk_{key}:Net"}
    doc["stages"][0 if where == "teacher" else 1]["model" if where == "teacher" else "student"] = spec
    with pytest.raises(ConfigError, match=USER_MODULES[key][1]) as exc:
        validate_document(doc)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("key", ["syntax", "ctor"])
def test_validate_cli_reports_broken_user_model_in_one_line(tmp_path, key):
    mods = _user_modules(tmp_path / "mods")
    doc = _two_stage_doc()
    doc["stages"][0]["model"] = {"import": f"ekd_atk_{key}:Net"}
    (tmp_path / "p.yaml").write_text(json.dumps(doc))
    res = edgekd("validate", "p.yaml", cwd=tmp_path, env={"PYTHONPATH": str(mods)}, timeout=60)
    assert_refused(res, r"p\.yaml:\d+: stages\[0\] \(teacher\): ", USER_MODULES[key][1])


def test_validate_accepts_a_working_user_model(tmp_path, monkeypatch):
    (tmp_path / "ekd_atk_good.py").write_text(
        "import torch\nclass Net(torch.nn.Sequential):\n"
        "    def __init__(self, in_channels, num_classes):\n"
        "        super().__init__(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = _two_stage_doc()
    doc["stages"][1]["student"] = {"import": "ekd_atk_good:Net"}
    validate_document(doc)


# --------------------------------------------------------------------------- NaN / Inf weights


def _teacher_state(bad: float | None = None, key: str = "stem.0.weight") -> dict:
    from edgekd.models import build_model

    model = build_model({"name": "resnet_teacher", "kwargs": {"widths": [8, 16, 32], "depth": 1}}, 1, 10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if bad is not None:
        name = key if key in state else next(k for k, v in state.items() if v.is_floating_point())
        state[name].view(-1)[0] = bad
    return state


def test_nan_checkpoint_is_refused_before_training(tmp_path):
    torch.save(_teacher_state(float("nan")), tmp_path / "nan.pt")
    doc = _two_stage_doc()
    doc["stages"][0]["checkpoint"] = str(tmp_path / "nan.pt")
    (tmp_path / "p.yaml").write_text(json.dumps(doc))
    res = edgekd("run", "p.yaml", "-o", "r", cwd=tmp_path, timeout=120)
    assert_refused(res, r"checkpoint '.*nan\.pt' holds NaN in '[\w.]+'", code=1)
    assert not list((tmp_path / "r").glob("*teacher*/teacher.pt"))


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_weights_are_refused_by_every_loader(tmp_path, bad):
    from edgekd.compress.qat_export import read_qat_state
    from edgekd.models import build_model
    from edgekd.models.checkpoint import load_into

    spec = {"name": "resnet_teacher", "kwargs": {"widths": [8, 16, 32], "depth": 1}}
    torch.save(_teacher_state(bad), tmp_path / "w.pt")
    with pytest.raises(ModelError, match=r"checkpoint '.*w\.pt' holds (NaN|Inf) in '") as exc:
        load_into(build_model(spec, 1, 10), tmp_path / "w.pt")
    assert "\n" not in str(exc.value)
    qat = {"fq.activation_post_process.min_val": torch.tensor([float("inf")]), "fq.scale": torch.tensor([bad])}
    torch.save({"state_dict": {}, "qat_state": qat}, tmp_path / "q.pt")
    with pytest.raises(ModelError, match=r"holds (NaN|Inf) in 'fq\.scale'"):
        read_qat_state(tmp_path / "q.pt")


def test_infinite_buffers_stay_allowed_but_nan_ones_do_not(tmp_path):
    from edgekd.models.checkpoint import load_into

    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("mask", torch.tensor([0.0, float("-inf")]))  # an attention-style mask

    torch.save(Masked().state_dict(), tmp_path / "ok.pt")
    load_into(Masked(), tmp_path / "ok.pt")
    state = Masked().state_dict()
    state["mask"][0] = float("nan")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=r"holds NaN in 'mask'"):
        load_into(Masked(), tmp_path / "bad.pt")


# --------------------------------------------------------------------------- predict --mean / --std


@pytest.mark.parametrize("std", ["nan", "-1"])
def test_predict_refuses_nonsense_std(tmp_path, std):
    from PIL import Image

    (tmp_path / "m.onnx").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "i.png")
    res = edgekd("predict", "m.onnx", "i.png", "--std", std, cwd=tmp_path, timeout=60)
    assert_refused(res, rf"--std must be comma-separated positive numbers, .*got '{std}'", code=2)


@pytest.mark.parametrize(
    "option,text", [("--std", "inf"), ("--std", "0"), ("--std", "0.2,nan"), ("--std", ","), ("--mean", "nan"),
                    ("--mean", "-inf"), ("--mean", "x")],
)  # fmt: skip
def test_mean_and_std_options_must_be_finite(option, text):
    from edgekd.cli.model import _floats

    with pytest.raises(ConfigError, match=rf"{option} must be comma-separated"):
        _floats(text, option, positive=option == "--std")
    assert _floats("0.5,-0.25", "--mean") == [0.5, -0.25]


@pytest.mark.parametrize("key,value", [("std", [float("nan")]), ("std", [-1.0]), ("mean", [float("inf")])])
def test_agent_refuses_non_finite_normalisation_in_metadata(key, value):
    from edgekd.formats.runner import agent

    with pytest.raises(agent().AgentError, match=rf"meta {key} must be 1 finite per-channel values"):
        agent()._check_meta({**META, key: value}, "m.json")


# --------------------------------------------------------------------------- arrays that are not real numbers


def test_complex_npz_is_refused_by_the_data_stage(tmp_path):
    x = np.random.default_rng(0).random((40, 8, 8)) * (1 + 1j)
    np.savez(tmp_path / "c.npz", x=x, y=np.arange(40) % 4)
    doc = _two_stage_doc()
    doc["data"].update(source="npz", path=str(tmp_path / "c.npz"))
    (tmp_path / "p.yaml").write_text(json.dumps(doc))
    res = edgekd("run", "p.yaml", "-o", "r", cwd=tmp_path, timeout=120)
    assert_refused(res, r"array 'x' in '.*c\.npz' has dtype complex128: expected real numbers", code=1)


def test_object_eval_npz_is_refused_by_bench(pt2, tmp_path):
    x = np.empty(4, dtype=object)
    x[:] = [_Evil() for _ in range(4)]
    np.savez(tmp_path / "o.npz", x=x, y=np.arange(4))  # pickled objects: np.savez allows them when writing
    res = edgekd("bench", str(pt2 / "legit.pt2"), "--meta", str(pt2 / "m.json"), "--data", "o.npz", cwd=tmp_path)
    assert_refused(res, r"array 'x' in 'o\.npz' holds Python objects", code=1)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays,refusal",
    [
        ({"x": np.zeros((8, 8, 8), np.complex64), "y": np.arange(8)}, r"array 'x' .* has dtype complex64"),
        ({"x": np.full((8, 8, 8), "a"), "y": np.arange(8)}, r"array 'x' .* has dtype <U1"),
        ({"x": np.zeros((8, 8, 8)), "y": np.arange(8) + 0j}, r"array 'y' .* has dtype complex128"),
        ({"x": np.zeros((8, 8, 8)), "y": np.arange(8), "x_val": np.zeros((8, 8, 8), complex), "y_val": np.arange(8)},
         r"array 'x_val' .* has dtype complex128"),
        ({"x": np.array([None] * 8, object), "y": np.arange(8)}, r"array 'x' .* holds Python objects"),
    ],
)  # fmt: skip
def test_npz_readers_refuse_arrays_that_are_not_real(tmp_path, arrays, refusal):
    from types import SimpleNamespace

    from edgekd.data.sources import load_npz_source
    from edgekd.edge.bench_inputs import write_eval_npz

    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=refusal) as exc:
        load_npz_source(SimpleNamespace(path=str(path), channels=1, image_size=8, fit="stretch"))
    assert "\n" not in str(exc.value)
    if "x_val" not in arrays:
        with pytest.raises(DataError, match=refusal):
            write_eval_npz(path, tmp_path / "eval.npz")


def test_saved_split_with_a_complex_array_is_refused(tmp_path):
    from edgekd.data.dataset import SplitData

    arrays = {f"{k}_{s}": (np.zeros((2, 1, 8, 8), np.float32) if k == "x" else np.arange(2)) for s in
              ("train", "val", "test") for k in ("x", "y")}  # fmt: skip
    arrays["y_val"] = arrays["y_val"] + 0j
    path = _npz(tmp_path / "dataset.npz", **arrays, labels=np.array(["a", "b"]), mean=np.zeros(1), std=np.ones(1))
    with pytest.raises(DataError, match=r"array 'y_val' in '.*dataset\.npz' has dtype complex128"):
        SplitData.load(path)

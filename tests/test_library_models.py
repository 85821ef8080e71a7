"""timm and torchvision models by name (``model: {timm: NAME}``, ``{torchvision: NAME}``) with local ``pretrained``
weights, through a real pipeline. Real timm and torchvision, real files made here; nothing is downloaded.

This machine's only torchvision wheel is a CUDA build whose compiled operators cannot load beside the CPU torch:
conftest.py sets EDGEKD_TORCHVISION_WITHOUT_OPS=1, the documented workaround (edgekd.models.libraries).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest
import torch

from edgekd.core.errors import ModelError
from edgekd.models import build_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("timm") is None or importlib.util.find_spec("torchvision") is None,
    reason="needs pip install 'edgekd[timm]' (timm and torchvision)",
)


def test_timm_model_is_built_for_the_data_channels_and_classes():
    model = build_model({"timm": "mobilenetv3_small_050"}, 1, 7).eval()
    assert model.conv_stem.in_channels == 1
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 7)
    model = build_model({"timm": "resnet10t", "kwargs": {"drop_rate": 0.1}}, 3, 5)
    assert model.fc.out_features == 5 and model.drop_rate == 0.1


def test_torchvision_model_by_name_and_its_rgb_only_rule():
    model = build_model({"torchvision": "mobilenet_v3_small"}, 3, 4).eval()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(ModelError, match=r"takes 3-channel .* data has 1 channel"):
        build_model({"torchvision": "resnet18"}, 1, 4)


def test_unknown_names_are_one_line_with_a_suggestion():
    with pytest.raises(ModelError, match=r"timm has no model 'mobilenetv3_smal_100' \(did you mean mobilenetv3_small"):
        build_model({"timm": "mobilenetv3_smal_100"}, 3, 10)
    with pytest.raises(ModelError, match=r"torchvision has no model 'resnet19' \(did you mean resnet18"):
        build_model({"torchvision": "resnet19"}, 3, 10)
    with pytest.raises(ModelError, match=r"cannot build timm model 'resnet10t' .*bogus"):
        build_model({"timm": "resnet10t", "kwargs": {"bogus": 1}}, 3, 10)


def _timm_train_checkpoint(path, classes: int):
    """A timm train.py checkpoint (model_best.pth.tar) of resnet10t: state_dict, an EMA copy and args."""
    import timm

    torch.manual_seed(1)
    net = timm.create_model("resnet10t", num_classes=classes)
    state = net.state_dict()
    torch.save({"epoch": 3, "arch": "resnet10t", "state_dict": state, "state_dict_ema": state,
                "args": Namespace(model="resnet10t", lr=0.1)}, path)  # fmt: skip
    return state


def test_pretrained_file_with_another_head_loads_the_body_and_replaces_the_head(tmp_path, monkeypatch):
    saved = _timm_train_checkpoint(tmp_path / "model_best.pth.tar", classes=1000)
    said: list[str] = []
    monkeypatch.setattr("edgekd.core.console.log", said.append)
    model = build_model({"timm": "resnet10t", "pretrained": str(tmp_path / "model_best.pth.tar")}, 3, 10)
    assert model.fc.out_features == 10
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert body and all(torch.equal(v, saved[k]) for k, v in body.items())
    assert any("head replaced (1000 classes in the file, the data has 10): fc.weight, fc.bias" in m for m in said)
    assert any("'state_dict' of a timm train.py checkpoint" in m for m in said), said
    # the same class count: every tensor is the file's, the head included
    same = build_model({"timm": "resnet10t", "pretrained": str(tmp_path / "model_best.pth.tar")}, 3, 1000)
    assert torch.equal(same.fc.weight, saved["fc.weight"])


def test_pretrained_file_of_another_architecture_is_one_line(tmp_path):
    import timm

    torch.save(timm.create_model("mobilenetv3_small_050", num_classes=10).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ModelError, match=r"does not fit the ResNet architecture: .*missing keys"):
        build_model({"timm": "resnet10t", "pretrained": str(tmp_path / "w.pth")}, 3, 10)
    with pytest.raises(ModelError, match=r"pretrained weights '.*nothing\.pth' do not exist .*never downloads"):
        build_model({"timm": "resnet10t", "pretrained": str(tmp_path / "nothing.pth")}, 3, 10)


def test_torchvision_pretrained_safetensors_with_an_imagenet_head(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import get_model

    torch.manual_seed(2)
    ref = get_model("mobilenet_v3_small", weights=None)  # 1000 classes, like torchvision's ImageNet weights
    save_file(ref.state_dict(), tmp_path / "mnv3.safetensors")
    model = build_model({"torchvision": "mobilenet_v3_small", "pretrained": str(tmp_path / "mnv3.safetensors")}, 3, 6)
    assert torch.equal(model.features[0][0].weight, ref.features[0][0].weight)
    assert model.classifier[3].out_features == 6


def test_mismatched_torchvision_without_the_workaround_is_one_line():
    env = {k: v for k, v in os.environ.items() if k != "EDGEKD_TORCHVISION_WITHOUT_OPS"}
    code = (
        "from edgekd.models import build_model\n"
        "from edgekd.core.errors import ModelError\n"
        "try:\n    build_model({'timm': 'resnet10t'}, 3, 10)\nexcept ModelError as e:\n    print('ERR', e)\n"
        "else:\n    print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    if out.startswith("OK"):
        pytest.skip("this torchvision's compiled operators load beside this torch: a matched install")
    assert out.startswith("ERR torchvision ") and "cannot load its compiled operators" in out, out
    assert "EDGEKD_TORCHVISION_WITHOUT_OPS=1" in out and len(out.strip().splitlines()) == 1


def test_layers_lists_timm_tap_names():
    from edgekd.cli.layers import layer_table

    rows = {r[0]: r for r in layer_table("timm:mobilenetv3_small_050", 3, 32, 10)}
    assert rows["blocks.2"][2] == "1x24x2x2" and "conv_head" in rows


def test_pretrained_file_content_is_part_of_the_cache_key(tmp_path):
    import timm

    from edgekd.core.loader import validate_document
    from edgekd.core.pipeline import cache_key
    from edgekd.stages import STAGES

    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), tmp_path / "w.pth")
    doc = {"name": "k", "data": {"source": "digits"}, "stages": [
        {"stage": "teacher", "model": {"timm": "resnet10t", "pretrained": str(tmp_path / "w.pth")}}]}  # fmt: skip
    cfg = validate_document(doc)
    stage = STAGES.get("teacher").form(cfg.task)
    key = cache_key(stage, cfg.stages[0], cfg, {})
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), tmp_path / "w.pth")  # other weights
    assert cache_key(stage, cfg.stages[0], cfg, {}) != key


def test_timm_teacher_and_student_through_a_pipeline(tmp_path):
    """An RGB folder (the synthetic photo set), a timm ResNet teacher started from a timm train.py checkpoint with a
    1,000-class head, a timm MobileNetV3 student, ONNX (fp32 + int8, checked against PyTorch by onnxruntime) and
    TFLite int8 through litert-torch (checked by the LiteRT interpreter)."""
    from edgekd.core.loader import validate_document
    from edgekd.core.pipeline import run_pipeline
    from edgekd.data.synthetic import make_photos

    make_photos(tmp_path / "photos", per_class=7, size=32, seed=0)
    _timm_train_checkpoint(tmp_path / "model_best.pth.tar", classes=1000)
    doc = {
        "name": "timm",
        "seed": 0,
        "data": {"source": "folder", "path": str(tmp_path / "photos"), "image_size": 32},
        "stages": [
            {"stage": "teacher", "train": {"epochs": 1, "batch_size": 32},
             "model": {"timm": "resnet10t", "pretrained": str(tmp_path / "model_best.pth.tar")}},
            {"stage": "distill", "train": {"epochs": 1, "batch_size": 32},
             "student": {"timm": "mobilenetv3_small_050"}},
            {"stage": "export_onnx", "models": ["student"], "min_int8_agreement": 0.0},
            {"stage": "convert_tflite", "precisions": ["int8"], "min_int8_agreement": 0.0},
        ],
    }  # fmt: skip
    result = run_pipeline(validate_document(doc), tmp_path / "run")
    assert [s.status for s in result.stages] == ["ran"] * 5
    files = {a.path.name for a in result.artifacts.values()}
    assert {"student-fp32.onnx", "student-int8.onnx", "student-int8.tflite", "baseline.pt"} <= files, files
    meta = result.artifacts["student"].meta
    assert meta["model"] == {"name": None, "import": None, "kwargs": {}, "timm": "mobilenetv3_small_050"}


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_timm_models_give_int8_qat_files_that_compute_what_qat_trained(name, tmp_path):
    """Both QAT files of real timm models are int8 throughout, and the TFLite file computes what the fake-quantized
    model computed in training.

    resnet10t adds its shortcut in place (x += shortcut, aten.add_), which the quantizer does not annotate; QAT
    rewrites it out of place (edgekd.compress.qat.out_of_place). mobilenetv3_small_050 has hard-swish, a
    squeeze-excite gate (hardsigmoid, rewritten as hardtanh(x + 3, 0, 6) / 6 by explicit_hardsigmoid) whose input
    is read by a mean and a mul, and residual adds that feed other adds: all left in float inside the int8 file
    until edgekd annotated them itself (_annotate_elementwise)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.compress import qat
    from edgekd.compress.qat_export import qat_onnx, qat_tflite
    from edgekd.compress.structure import describe
    from edgekd.core.artifacts import TorchModel
    from edgekd.formats.onnx_inspect import inspect_onnx
    from edgekd.formats.tflite.flatbuffer import inspect_tflite

    spec = {"timm": name}
    torch.manual_seed(0)
    model = build_model(spec, 3, 10).eval()
    with torch.no_grad():  # logits of order 1 rather than timm's near-zero initial ones
        model.get_classifier().weight.mul_(100.0)
    x = torch.randn(8, 3, 32, 32)
    qat.fold_batchnorm(model, x)
    qat.check_quantizable(model, x)  # accepts add_ and hardsigmoid now
    graph = qat.prepare(model, x)
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert not targets & {"aten.add_.Tensor", "aten.hardsigmoid.default", "aten.hardsigmoid_.default"}, targets
    qm = qat.QatModel(graph, observe_epochs=1).train()
    qm(x)
    qm.eval()
    with torch.no_grad():
        trained = qm(x).numpy()
    float_state, qat_state = qat.split_state(model, qm.graph)
    qat.write_checkpoint(tmp_path / "m.pt", float_state, qat_state)
    meta = {"input_layout": "NCHW", "input_shape": [1, 3, 32, 32], "mean": [0.0] * 3, "std": [1.0] * 3,
            "labels": list("0123456789"), "model": spec, "qat": {},
            "structure": describe(model, build_model(spec, 3, 10, pretrained=False))}  # fmt: skip
    art = TorchModel("m", tmp_path / "m.pt", meta)
    qat_tflite(art, tmp_path / "m.tflite")  # refuses a file with any op left in float
    qat_onnx(art, tmp_path / "m.onnx")
    assert inspect_tflite(tmp_path / "m.tflite")["precision"] == "int8"
    assert inspect_onnx(tmp_path / "m.onnx")["precision"] == "int8"
    it = Interpreter(model_path=str(tmp_path / "m.tflite"), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for sample in x.numpy():
        it.set_tensor(inp["index"], sample[None])
        it.invoke()
        got.append(it.get_tensor(out["index"])[0])
    # The same scales; the integer kernels round differently from fake quantization (TFLite's int8 HARD_SWISH is
    # one output step off, measured alone), and those steps add up through an untrained network's layers, so the
    # check is the pattern of the logits rather than their last digits: a wrong scale anywhere destroys it.
    got = np.stack(got)
    centred = np.corrcoef((got - got.mean(0)).ravel(), (trained - trained.mean(0)).ravel())[0, 1]
    assert centred > 0.95, centred
    assert (got.argmax(1) == trained.argmax(1)).mean() >= 7 / 8


def test_pruned_timm_model_is_rebuilt_with_its_own_layer_classes(tmp_path):
    """timm's BatchNormAct2d (a BatchNorm2d subclass with its activation inside) is reshaped in place, not rebuilt as a
    plain BatchNorm2d: a pruned timm MobileNetV3 saves, rebuilds and gives the same logits."""
    import torch_pruning as tp

    from edgekd.compress.structure import apply_structure, check_rebuild, describe

    spec = {"timm": "mobilenetv3_small_050"}
    torch.manual_seed(0)
    model = build_model(spec, 3, 10).eval()
    x = torch.randn(1, 3, 32, 32)
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=0.3, ignored_layers=[model.classifier])  # fmt: skip
    pruner.step()
    structure = describe(model, build_model(spec, 3, 10))
    kinds = {v["type"] for v in structure.values()}
    assert "reshape" in kinds and structure["bn1"]["class"] == "BatchNormAct2d"
    check_rebuild(model, build_model(spec, 3, 10), structure)
    rebuilt = apply_structure(build_model(spec, 3, 10), structure).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert type(rebuilt.bn1).__name__ == "BatchNormAct2d"
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
    bad = {**structure, "bn1": {**structure["bn1"], "attrs": {"forward": 1}}}
    with pytest.raises(ModelError, match="sets 'forward' on layer 'bn1'"):
        apply_structure(build_model(spec, 3, 10), bad)


def test_folding_timm_batchnorm_with_its_activation_keeps_the_activation():
    """timm's BatchNormAct2d holds the activation after its BatchNorm: QAT's fold leaves that activation in its place
    (folding it to Identity dropped the ReLU6 of every EfficientNet-Lite block), and the folded model is saved and
    rebuilt from spec + structure."""
    from edgekd.compress import qat
    from edgekd.compress.structure import apply_structure, describe

    spec = {"timm": "efficientnet_lite0"}
    torch.manual_seed(0)
    model = build_model(spec, 3, 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    folded = qat.fold_batchnorm(model, x)
    assert "bn1" in folded and type(model.bn1) is torch.nn.ReLU6
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-4)
    structure = describe(model, build_model(spec, 3, 10))
    assert structure["bn1"] == {"type": "ReLU6", "inplace": True}
    rebuilt = apply_structure(build_model(spec, 3, 10), structure).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), before, atol=1e-4)

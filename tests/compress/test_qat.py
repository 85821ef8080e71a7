"""QAT: BatchNorm folding, fake-quant training state, and int8 TFLite / ONNX files that hold the learned ranges.

One small MobileNetV2-style model (residual adds, depthwise convs, ReLU6) is fake-quant trained for a few steps; its
int8 TFLite and QDQ ONNX files are converted once per module and checked in the files themselves and in the runtimes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch")
pytest.importorskip("torchao")

from edgekd.compress import qat
from edgekd.compress.qat_export import qat_onnx, qat_tflite
from edgekd.compress.structure import describe
from edgekd.core.artifacts import TorchModel
from edgekd.core.errors import ConfigError, ModelError
from edgekd.core.loader import validate_document
from edgekd.formats.onnx_inspect import inspect_onnx
from edgekd.formats.runner import load_runner
from edgekd.formats.tflite.flatbuffer import inspect_tflite
from edgekd.models import build_model
from edgekd.models.io import load_torch_model, save_torch_model

SPEC = {"name": "mobilenetv2_student", "kwargs": {"width": 8, "cfg": [[1, 8, 1, 1], [2, 16, 2, 2]], "last": 32}}
SHAPE = (1, 1, 16, 16)
META = {"input_layout": "NCHW", "input_shape": list(SHAPE), "mean": [0.0], "std": [1.0], "labels": list("0123456789")}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(SPEC, 1, 10).eval()


def _data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE[1:], generator=g)
    return x, (x.mean((1, 2, 3)) * 10 % 10).long()


def test_fold_batchnorm_keeps_the_outputs():
    model = _model()
    for m in model.modules():  # non-trivial statistics, so folding has something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = _data(8)[0]
    ref = model(x)
    folded = qat.fold_batchnorm(model, x)
    assert len(folded) == sum(isinstance(m, nn.Identity) for m in model.modules()) > 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-4)


def test_observers_learn_then_freeze_and_never_move_in_eval():
    model = _model()
    x, _ = _data(8)
    qat.fold_batchnorm(model, x)
    qm = qat.QatModel(qat.prepare(model, x), observe_epochs=1)

    def ranges():
        return {k: v.clone() for k, v in qm.graph.state_dict().items() if k.endswith((".min_val", ".max_val"))}

    qm.train()  # epoch 1: observing
    qm(x)
    first = ranges()
    qm.eval()
    qm(x * 5)
    assert all(torch.equal(first[k], v) for k, v in ranges().items())  # eval: frozen
    qm.train()  # epoch 2: past observe_epochs
    qm(x * 5)
    assert all(torch.equal(first[k], v) for k, v in ranges().items())


@pytest.fixture(scope="module")
def qat_artifact(tmp_path_factory):
    """A QAT artifact exactly as the qat stage writes it, after a few fake-quant training steps."""
    torch.manual_seed(0)
    model = _model()
    x, y = _data(64)
    qat.fold_batchnorm(model, x)
    qm = qat.QatModel(qat.prepare(model, x), observe_epochs=1).train()
    opt = torch.optim.SGD(qm.parameters(), lr=0.05)
    for i in range(0, 64, 16):
        loss = nn.functional.cross_entropy(qm(x[i : i + 16]), y[i : i + 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
    qm.eval()
    float_state, qat_state = qat.split_state(model, qm.graph)
    model.load_state_dict(float_state)
    out = tmp_path_factory.mktemp("qat")
    structure = describe(model, _model())
    saved = save_torch_model("student_qat", model, SPEC, META, out / "student_qat.pt", structure=structure, qat={})
    qat.write_checkpoint(out / "student_qat.pt", float_state, qat_state)
    art = TorchModel("student_qat", out / "student_qat.pt", saved.meta)
    fq_logits = qm(_data(32, seed=1)[0]).detach().numpy()
    return art, out, fq_logits


def test_qat_artifact_loads_as_a_float_model(qat_artifact):
    art, _, _ = qat_artifact
    model = load_torch_model(art)  # the structure (folded BatchNorm) and the "state_dict" entry of the file
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(_data(2)[0]).shape == (2, 10)


def test_qat_tflite_is_int8_with_the_learned_ranges(qat_artifact):
    art, out, fq_logits = qat_artifact
    info = qat_tflite(art, out / "qat-int8.tflite")
    found = inspect_tflite(out / "qat-int8.tflite")
    assert found["precision"] == "int8"
    assert all(e["weight_dtype"] == "int8" and e["input_dtype"] == "int8" and e["output_dtype"] == "int8"
               for e in found["compute_ops"])  # fmt: skip
    s = info["scales"]
    assert s["found_in_file"] == s["learned_activation_scales"] > 10 and s["max_rel_diff"] <= 1e-6
    assert s["weight_scales_found"] == s["learned_weight_scales"] > 5
    assert s["file_scales_not_learned"] == 0
    got = load_runner(out / "qat-int8.tflite", {**art.meta, "input_layout": "NCHW"}).predict(
        _data(32, seed=1)[0].numpy()
    )
    assert (got.argmax(1) == fq_logits.argmax(1)).mean() >= 0.9  # the interpreter runs what QAT simulated


def test_qat_onnx_is_int8_qdq_with_the_learned_ranges(qat_artifact):
    art, out, fq_logits = qat_artifact
    info = qat_onnx(art, out / "qat-int8.onnx")
    found = inspect_onnx(out / "qat-int8.onnx")
    assert found["precision"] == "int8"
    assert found["initializer_dtypes"].get("int8", 0) >= len(found["compute_ops"])  # weights stored as int8
    s = info["qat_scales"]
    assert (
        s["found_in_file"] == s["learned_activation_scales"] and s["weight_scales_found"] == s["learned_weight_scales"]
    )
    got = load_runner(out / "qat-int8.onnx", {**art.meta, "input_layout": "NCHW"}).predict(_data(32, seed=1)[0].numpy())
    assert np.abs(got - fq_logits).max() < 0.05 * np.abs(fq_logits).max() + 1e-3


def test_qat_state_that_does_not_fit_the_model_is_refused(qat_artifact):
    art, _, _ = qat_artifact
    state = torch.load(art.path, weights_only=True)["qat_state"]
    state.pop(next(iter(state)))
    with pytest.raises(ModelError, match="does not fit the re-traced graph"):
        qat.load_quantized(load_torch_model(art), state, torch.zeros(SHAPE), dynamic=False, fold_quantize=False)


class _WithSilu(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3)
        self.act = nn.SiLU()  # litert-torch leaves SiLU in float (test_qat_ops)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_unsupported_op_names_the_layer():
    with pytest.raises(ModelError, match=r"model: layer 'act' uses aten\.silu, which the int8 quantizer does not"):
        qat.check_quantizable(_WithSilu(), torch.zeros(SHAPE))


def test_validate_names_stage_key_and_layer_of_an_unsupported_op():
    doc = {
        "name": "t",
        "data": {"source": "digits", "image_size": 16},
        "stages": [
            {"stage": "teacher", "model": {"name": "tiny_cnn", "kwargs": {"widths": [8, 8, 8]}}},
            {"stage": "distill", "student": {"import": "test_qat:_WithSilu"}},
            {"stage": "qat"},
        ],
    }
    with pytest.raises(ConfigError, match=r"stages\[2\] \(qat\): model: layer 'act' uses aten\.silu"):
        validate_document(doc, where="p.yaml")


def test_fused_fake_quant_would_train_other_scales_than_the_files_get():
    """Why FakeQuantize: the fused kernel's scales differ from calculate_qparams (what convert_pt2e uses)."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize, FusedMovingAvgObsFakeQuantize
    from torchao.quantization.pt2e.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

    def weight_fq(cls):
        return cls(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-127, quant_max=127, dtype=torch.qint8,
                   qscheme=torch.per_channel_symmetric, ch_axis=0, eps=qat.EPS)  # fmt: skip

    def act_fq(cls):
        return cls(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                   qscheme=torch.per_tensor_affine, eps=qat.EPS)  # fmt: skip

    w, narrow = torch.randn(16, 8, 3, 3), torch.rand(64, 8) * 0.01
    for cls, expect_equal in ((FusedMovingAvgObsFakeQuantize, False), (FakeQuantize, True)):
        fw, fa = weight_fq(cls), act_fq(cls)
        fw(w)
        fa(narrow)
        rel_w = float(((fw.scale - fw.calculate_qparams()[0]).abs() / fw.calculate_qparams()[0]).max())
        same_a = torch.equal(fa.scale, fa.calculate_qparams()[0])
        if expect_equal:
            assert rel_w == 0.0 and same_a
        else:  # per-channel weights: 255/254 (0.39 %); a narrow activation range ignores the minimum scale
            assert 0.003 < rel_w < 0.005 and not same_a


class _Gates(nn.Module):
    """hardsigmoid out of place and in place (a tensor read again after its in-place gate)."""

    def forward(self, x):
        g = nn.functional.hardsigmoid(x * 2.0)
        h = x - 1.0
        nn.functional.hardsigmoid(h, inplace=True)
        return g * x + h


def test_hardsigmoid_rewritten_as_its_definition_computes_the_same():
    """out_of_place then explicit_hardsigmoid replace every hardsigmoid (in place too) by hardtanh(x + 3, 0, 6) / 6:
    no hardsigmoid is left, and the graph computes what the model did, also where a later op reads an in-place
    gate's input."""
    x = torch.linspace(-6, 6, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    model = _Gates().eval()
    graph = qat.export_graph(model, x, dynamic=False).module()
    qat.out_of_place(graph)  # the in-place gate first, as qat.prepare does
    qat.explicit_hardsigmoid(graph)
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert not any("hardsigmoid" in t for t in targets), targets
    assert torch.allclose(graph(x[:1]), model(x[:1]), atol=1e-6)

"""Evidence for edgekd.compress.qat.SUPPORTED_OPS: a small model around each op is fake-quantized and converted through
the QAT path; the static check must accept the op exactly when both files come out int8 (every conv/matmul in int8,
and no op left in float inside the TFLite file). Two unannotated ops in a row leave the tensor between them without a
range; the static check cannot see that, the check of the converted file does (and names the layer).

Slow (two conversions per op, ~6 min of CPU on 2 cores): ``pytest -m slow tests/compress/test_qat_ops.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch")

from edgekd.compress import qat
from edgekd.compress.qat_export import qat_onnx, qat_tflite
from edgekd.core.artifacts import TorchModel
from edgekd.core.errors import ModelError
from edgekd.formats.onnx_inspect import inspect_onnx
from edgekd.formats.tflite.flatbuffer import inspect_tflite

pytestmark = pytest.mark.slow

SHAPE = (1, 1, 8, 8)
META = {"input_layout": "NCHW", "input_shape": list(SHAPE), "mean": [0.0], "std": [1.0], "labels": list("0123")}

# op name -> the function applied to the (N, 8, 8, 8) activations between two convs
BETWEEN = {
    "relu": torch.relu,
    "relu6": nn.functional.relu6,
    "hardtanh": nn.functional.hardtanh,
    "clamp": lambda x: x.clamp(-1.0, 1.0),
    "leaky_relu": nn.functional.leaky_relu,
    "hardswish": nn.functional.hardswish,
    "hardswish_": lambda x: nn.functional.hardswish(x, inplace=True),  # timm / torchvision MobileNetV3 (inplace=True)
    "hardsigmoid": nn.functional.hardsigmoid,  # their squeeze-excite gate (rewritten as hardtanh(x + 3, 0, 6) / 6)
    "hardsigmoid_": lambda x: nn.functional.hardsigmoid(x, inplace=True),
    "squeeze-excite": lambda x: x * nn.functional.hardsigmoid(x.mean((2, 3), keepdim=True)),  # a tensor read twice
    "add chain": lambda x: (x + x.abs()) + x,  # an add feeding an add (timm EfficientNet / MobileNetV2 stages)
    "dropout_": lambda x: nn.functional.dropout(x, 0.2, training=False, inplace=True),
    "gelu": nn.functional.gelu,
    "abs": torch.abs,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "exp": torch.exp,
    "softmax": lambda x: torch.softmax(x, 1),
    "sub": lambda x: x - 0.5,
    "div": lambda x: x / 3.0,
    "mul": lambda x: x * x,
    "cat": lambda x: torch.cat([x, x], 2),
    "slice": lambda x: x[:, :, 1:],
    "pad": lambda x: nn.functional.pad(x, (1, 1, 1, 1)),
    "max_pool2d": lambda x: nn.functional.max_pool2d(x, 2),
    "avg_pool2d": lambda x: nn.functional.avg_pool2d(x, 2),
    "upsample_nearest2d": lambda x: nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"),
    "permute+reshape": lambda x: x.permute(0, 1, 3, 2).reshape(x.shape),
    "unsqueeze+squeeze": lambda x: x.unsqueeze(2).squeeze(2),
    # refused: litert-torch leaves these in float inside the int8 file
    "sin": torch.sin,
    "silu": nn.functional.silu,
    "layer_norm": lambda x: nn.functional.layer_norm(x, x.shape[-1:]),
    # accepted op by op, but two ops without a quantized tensor between them: the file check catches it
    "sub then div": lambda x: (x - 0.5) / 3.0,
}
CAUGHT_IN_THE_FILE = {"sub then div"}


class Around(nn.Module):
    """conv -> op -> conv -> mean -> linear (built by name through the model factory, like a user's model)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 4, op: str = "relu"):
        super().__init__()
        self.op = BETWEEN[op]
        self.c1, self.c2 = nn.Conv2d(in_channels, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.c2(self.op(self.c1(x))).mean((2, 3)))


@pytest.mark.parametrize("name", sorted(BETWEEN))
def test_static_op_check_agrees_with_the_files(name, tmp_path):
    """Accepted by the check -> both int8 files compute in int8; refused -> at least one of them would not."""
    torch.manual_seed(0)
    spec = {"import": "test_qat_ops:Around", "kwargs": {"op": name}}
    model = Around(op=name).eval()
    x = torch.randn(16, *SHAPE[1:])
    try:
        qat.check_quantizable(model, x)
        accepted = True
    except ModelError:
        accepted = False
    qm = qat.QatModel(qat.prepare(model, x), observe_epochs=1).train()
    qm(x)
    qm.eval()
    float_state, qat_state = qat.split_state(model, qm.graph)
    qat.write_checkpoint(tmp_path / "m.pt", float_state, qat_state)
    art = TorchModel("m", tmp_path / "m.pt", {**META, "model": spec, "qat": {}})
    found = {}
    for fmt, export in (("tflite", qat_tflite), ("onnx", qat_onnx)):
        try:
            export(art, tmp_path / f"m.{fmt}")  # each refuses to write a file that is not int8 throughout
            found[fmt] = (inspect_tflite if fmt == "tflite" else inspect_onnx)(tmp_path / f"m.{fmt}")["precision"]
        except ModelError as exc:
            found[fmt] = str(exc)
    int8 = all(v == "int8" for v in found.values())
    if name in CAUGHT_IN_THE_FILE:
        assert accepted and not int8 and "runs SUB in float inside the int8 TFLite file" in found["tflite"], found
    else:
        assert accepted == int8, (name, accepted, found)

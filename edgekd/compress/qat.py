"""Quantization-aware training through PT2E (torchao), with litert-torch's int8 quantizer and BatchNorm folded first.

The path and why:

* ``torch.ao.quantization`` (eager/FX) is deprecated; PT2E — ``torch.export`` then ``prepare_qat_pt2e`` /
  ``convert_pt2e`` from ``torchao.quantization.pt2e`` — is its replacement, and it is the input litert-torch's
  converter reads, so the graph that trained is the graph that is converted.
* The quantizer is litert-torch's ``PT2EQuantizer`` (per-channel symmetric int8 weights, per-tensor affine int8
  activations: what TFLite's int8 kernels expect). Its conv-BatchNorm QAT annotators fail in litert-torch 0.10 with
  torch 2.13 / torchao 0.18 (``ValueError: Expected `mod` to be an instance of `torch.nn.Module``` — upstream
  litert-torch issues #355, #801). So every BatchNorm that follows a conv is folded into it *before* QAT (the
  "freeze BN statistics" phase of QAT, applied from the start of a fine-tune) and those annotators are switched off.
* Fake quantization uses ``FakeQuantize`` with moving-average min/max observers rather than the fused kernel the
  quantizer defaults to: the fused kernel's per-channel weight scales are 255/254 (0.39 %) off ``convert_pt2e``'s and
  it ignores the minimum scale (tests/compress/test_qat.py), whereas ``FakeQuantize`` calls the same
  ``calculate_qparams`` — training sees exactly the scales the int8 files get.
* Conv + ReLU6 is annotated as one unit (litert-torch does that for ReLU only): the conv's output range is observed
  after the clamp, as TFLite's fused RELU6 and onnxruntime's QLinearConv want it.
* Observers learn ranges for ``observe_epochs`` epochs, then freeze; the last epochs fine-tune under fixed ranges.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from edgekd.core.errors import ModelError

EPS = 2**-12  # smallest scale (litert-torch's choice): a range narrower than 255 * EPS is widened to it
QUANTIZER = "litert-torch PT2EQuantizer: int8 per-channel symmetric weights, int8 per-tensor affine activations"
PATH = "PT2E (torchao.quantization.pt2e.prepare_qat_pt2e / convert_pt2e)"

# Ops in an exported graph that the QAT int8 path keeps in int8: annotated by the quantizer, or lowered by
# litert-torch to int8 TFLite ops with the ranges around them. Each was measured: a conv -> op -> conv model gives a
# TFLite file with no float op inside (tests/compress/test_qat_ops.py, `pytest -m slow`). Measured and refused because
# litert-torch leaves them in float between DEQUANTIZE and QUANTIZE: sin, silu, layer_norm. Anything not measured is
# refused too; the converted file is checked for float ops anyway (edgekd.compress.qat_export.float_islands).
# Rewritten before QAT: in-place add_ (a residual written x += shortcut) as add (:func:`out_of_place`), and
# hardsigmoid (MobileNetV3's squeeze-excite gate, which litert-torch lowers to an ADD it leaves in float) as its
# definition, hardtanh(x + 3, 0, 6) / 6 (:func:`explicit_hardsigmoid`).
SUPPORTED_OPS = frozenset(
    {
        *("conv1d", "conv2d", "linear", "addmm", "add", "add_", "sub", "mul", "div", "cat", "pad", "slice"),
        *("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "mean", "upsample_nearest2d"),
        *("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "leaky_relu", "hardswish", "hardswish_", "gelu"),
        *("hardsigmoid", "hardsigmoid_"),
        "abs",
        *("sigmoid", "tanh", "exp", "softmax"),
        *("view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "contiguous", "clone", "alias"),
        *("dropout", "dropout_"),  # removed before QAT
        "batch_norm",  # folded into the conv before QAT; a BatchNorm that follows no conv is refused below
        # shape bookkeeping of a dynamic-batch export
        *("_assert_tensor_metadata", "sym_size", "sym_constrain_range_for_size", "_assert_scalar", "ge", "le"),
        "getitem",
    }
)
SUPPORTED_SUMMARY = (
    "conv, linear, add/sub/mul/div, cat, pad, slice, max/avg/adaptive pooling, mean, nearest upsampling, relu, relu6, "
    "hardtanh, clamp, leaky_relu, hardswish, hardsigmoid, gelu, abs, sigmoid, tanh, exp, softmax, reshapes, dropout, "
    "BatchNorm after a conv"
)


def op_name(node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def node_layer(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return (list(stack.values())[-1][0] if stack else "") or "(the model's own forward)"


def export_graph(model: nn.Module, example: torch.Tensor, dynamic: bool):
    """torch.export of ``model`` (eval mode): batch 1 for litert-torch, a dynamic batch for training and ONNX."""
    model.eval()
    if not dynamic:
        return torch.export.export(model, (example[:1],), strict=False)
    batch = torch.export.Dim("batch", max=4096)
    return torch.export.export(model, (torch.cat([example[:1], example[:1]]),), dynamic_shapes=({0: batch},),
                               strict=False)  # fmt: skip


def unsupported_ops(graph) -> list[tuple[str, str]]:
    """(layer, op) of every op the int8 path would leave in float, and of BatchNorms no conv precedes."""
    aten = torch.ops.aten
    bad = []
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = op_name(node)
        if name == "batch_norm":
            src = node.args[0]
            if getattr(src, "target", None) in (aten.conv2d.default, aten.conv1d.default) and len(src.users) == 1:
                continue
            bad.append((node_layer(node), "aten.batch_norm (not after a conv, cannot be folded)"))
        elif name not in SUPPORTED_OPS:
            bad.append((node_layer(node), f"aten.{name}"))
    return bad


def check_quantizable(model: nn.Module, example: torch.Tensor) -> None:
    """Refuse a model with an op the int8 quantizer does not handle, naming the layer and the op."""
    try:
        graph = export_graph(model, example, dynamic=False).graph
    except Exception as exc:  # torch.export raises many types on code it cannot trace
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"model: torch.export cannot trace {type(model).__name__} for QAT: {first}") from None
    bad = unsupported_ops(graph)
    if bad:
        layer, op = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ModelError(
            f"model: layer '{layer}' uses {op}, which the int8 quantizer does not support{more} (it would run in "
            f"float inside the int8 file, or is not known to stay int8). Supported: {SUPPORTED_SUMMARY}"
        )


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Fold each BatchNorm that directly follows a conv (its only consumer) into that conv; the BN becomes Identity.

    Pairs are found in the exported graph, so any model structure works, not only Sequential conv-BN blocks.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from edgekd.compress.structure import _set

    aten = torch.ops.aten
    graph = export_graph(model, example, dynamic=False).graph
    pairs = []
    for node in graph.nodes:
        if node.op == "call_function" and op_name(node) == "batch_norm":
            src = node.args[0]
            if getattr(src, "target", None) in (aten.conv2d.default, aten.conv1d.default) and len(src.users) == 1:
                pairs.append((node_layer(src), node_layer(node)))
    model.eval()
    with torch.no_grad():
        before = model(example)
    folded = []
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue  # a functional conv or BN inside a custom layer: not a module pair we can swap
        rest = _after_norm(bn)
        if rest is None:
            continue
        _set(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_name, rest)
        folded.append(bn_name)
    with torch.no_grad():
        diff = float((model(example) - before).abs().max())
    scale = float(before.abs().max()) or 1.0
    if diff > 1e-3 * max(scale, 1.0):  # folding is exact up to float rounding; anything more is a lost layer
        raise ModelError(f"model: folding BatchNorm into the convs changed its outputs by {diff:.3g}; edgekd cannot "
                         "fold this model's normalisation layers")  # fmt: skip
    return folded


def _after_norm(bn: nn.Module) -> nn.Module | None:
    """What stays of a BatchNorm once folded: Identity for a plain one; for a BatchNorm with its activation inside
    (timm's BatchNormAct2d: batch_norm -> drop -> act) that activation, so folding never drops it. None when the
    layer holds more than that (it is left unfolded)."""
    from edgekd.compress.structure import layer_args

    children = dict(bn.named_children())
    if not set(children) <= {"drop", "act"}:
        return None
    kept = [m for m in children.values() if not isinstance(m, nn.Identity)]
    if not kept:
        return nn.Identity()
    if len(kept) == 1 and "act" in children and kept[0] is children["act"] and layer_args(kept[0]) is not None:
        return kept[0]
    return None


def _is_relu6(node) -> bool:
    """relu6, or hardtanh clamping to [0, 6] (how torch writes ReLU6; hardtanh's own default is [-1, 1])."""
    aten = torch.ops.aten
    if node.target == aten.relu6.default:
        return True
    if node.target not in (aten.hardtanh.default, aten.hardtanh_.default):
        return False
    bounds = [*node.args[1:3], *(-1.0, 1.0)[len(node.args[1:3]) :]]
    return [float(b) for b in bounds] == [0.0, 6.0]


def _annotate_conv_relu6(gm, config, filter_fn=None) -> None:
    """Conv followed by ReLU6 (hardtanh 0..6) as one quantized unit, like litert-torch's conv_relu for ReLU.

    Without it the conv's output is observed *before* the clamp, its int8 range wastes codes on negative values the
    clamp removes, and onnxruntime keeps a float Clip between DequantizeLinear and QuantizeLinear. Observed after the
    clamp, TFLite fuses RELU6 into the conv and onnxruntime drops the Clip (its range lies inside the int8 range).
    """
    from litert_torch.quantize import pt2e_quantizer_utils as u
    from torch.fx import Node

    aten = torch.ops.aten
    convs = {aten.conv1d.default, aten.conv2d.default, aten.convolution.default}
    for n in gm.graph.nodes:
        if n.op != "call_function" or not _is_relu6(n):
            continue
        conv = n.args[0]
        if not isinstance(conv, Node) or conv.target not in convs:
            continue
        if len(conv.users) != 1:
            continue
        qmap = {conv.args[0]: u.get_input_act_qspec(config), conv.args[1]: u.get_weight_qspec(config)}
        partition = [n, conv, conv.args[1]]
        bias = conv.args[2] if len(conv.args) > 2 else None
        if isinstance(bias, Node):
            qmap[bias] = u.get_bias_qspec(config)
            partition.append(bias)
        if u._is_annotated(partition) or (filter_fn and any(not filter_fn(p) for p in partition)):
            continue
        conv.meta["quantization_annotation"] = u.QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
        n.meta["quantization_annotation"] = u.QuantizationAnnotation(
            output_qspec=u.get_output_act_qspec(config), _annotated=True
        )
        u._mark_nodes_as_annotated(partition)


def _annotate_elementwise(gm, config, filter_fn=None) -> None:
    """add, mul, cat, hard-swish and mean by their ATen ops, with add/mul -> ReLU (or ReLU6) as one unit.

    litert-torch finds these through ``source_fn_stack``, which only a strict ``torch.export`` records; the
    non-strict export used here (it traces timm's and torchvision's code) has none, so every residual add was left
    unannotated. Where an add fed only a quantized conv litert-torch still lowered it to an int8 ADD, but an add that
    feeds another add (timm's EfficientNet and MobileNetV2 stages) stayed in float inside the int8 file.
    """
    from litert_torch.quantize import pt2e_quantizer_utils as u
    from torch.fx import Node

    aten = torch.ops.aten

    def clamps(node) -> bool:
        return node.target in (aten.relu.default, aten.relu_.default) or _is_relu6(node)

    for n in gm.graph.nodes:
        if n.op != "call_function" or u._is_annotated([n]) or (filter_fn and not filter_fn(n)):
            continue
        if n.target in (aten.add.Tensor, aten.mul.Tensor):
            inputs = {a: u.get_input_act_qspec(config) for a in n.args[:2] if isinstance(a, Node)}
            users = list(n.users)
            if len(users) == 1 and clamps(users[0]) and not u._is_annotated(users):
                n.meta["quantization_annotation"] = u.QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
                users[0].meta["quantization_annotation"] = u.QuantizationAnnotation(
                    output_qspec=u.get_output_act_qspec(config), _annotated=True
                )
                continue
            n.meta["quantization_annotation"] = u.QuantizationAnnotation(
                input_qspec_map=inputs, output_qspec=u.get_output_act_qspec(config), _annotated=True
            )
        elif n.target in (aten.hardswish.default, aten.hardswish_.default, aten.mean.dim) and isinstance(
            n.args[0], Node
        ):  # an output read by more than a conv (squeeze-excite: by a mean and a mul) is quantized at its source
            n.meta["quantization_annotation"] = u.QuantizationAnnotation(
                input_qspec_map={n.args[0]: u.get_input_act_qspec(config)},
                output_qspec=u.get_output_act_qspec(config),
                _annotated=True,
            )
        elif n.target == aten.cat.default and n.args[0] and all(isinstance(a, Node) for a in n.args[0]):
            first = n.args[0][0]
            shared = u.SharedQuantizationSpec((first, n))
            # one range for every input and the output (a concatenation only copies); an input listed twice once
            inputs = {**{a: shared for a in n.args[0][1:]}, first: u.get_input_act_qspec(config)}
            n.meta["quantization_annotation"] = u.QuantizationAnnotation(
                input_qspec_map=inputs, output_qspec=shared, _annotated=True
            )


def make_quantizer():
    """litert-torch's PT2E quantizer for QAT on a BatchNorm-folded model (see the module docstring)."""
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

    class FoldedBatchNormQATQuantizer(pq.PT2EQuantizer):
        STATIC_QAT_ONLY_OPS: ClassVar[list[str]] = []  # no conv-BN pattern is left after folding

        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            if quantization_config is not None:
                _annotate_conv_relu6(model, quantization_config, filter_fn)
            result = super()._annotate_all_static_patterns(model, quantization_config, filter_fn)
            if quantization_config is not None:
                _annotate_elementwise(model, quantization_config, filter_fn)
            return result

    cfg = pq.get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    act = dataclasses.replace(
        cfg.input_activation,
        observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, eps=EPS),
    )
    weight = dataclasses.replace(
        cfg.weight,
        observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, eps=EPS),
    )
    cfg = dataclasses.replace(cfg, input_activation=act, output_activation=act, weight=weight)
    return FoldedBatchNormQATQuantizer().set_global(cfg)


def prepare(model: nn.Module, example: torch.Tensor, dynamic: bool = True):
    """The fake-quantized PT2E graph of a BatchNorm-folded ``model`` (dropout removed)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgekd.formats.tflite.via_litert_torch import _strip_dropout

    graph = export_graph(model, example, dynamic).module()
    # litert-torch 0.10 mis-scales the bias after a dropout (see via_litert_torch); dropout is off during QAT too,
    # so the graph that trains and the graph that converts are the same.
    _strip_dropout(graph)
    out_of_place(graph)
    explicit_hardsigmoid(graph)
    return prepare_qat_pt2e(graph, make_quantizer())


# in-place ops met in library models -> their out-of-place form (the quantizer annotates only the latter)
OUT_OF_PLACE = {
    torch.ops.aten.add_.Tensor: torch.ops.aten.add.Tensor,  # timm's ResNet: x += shortcut
    torch.ops.aten.hardsigmoid_.default: torch.ops.aten.hardsigmoid.default,
}


def out_of_place(gm) -> None:
    """Rewrite each in-place op of :data:`OUT_OF_PLACE` (``aten.add_``, ``aten.hardsigmoid_``) as its out-of-place
    form: the quantizer annotates only that, and an unannotated add_ leaves the layers around it in float
    (tests/compress/test_qat_ops.py). Later readers of the tensor it mutated read the new node instead, which is what
    the in-place op meant."""
    order = {n: float(i) for i, n in enumerate(gm.graph.nodes)}
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in OUT_OF_PLACE:
            continue
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(OUT_OF_PLACE[node.target], node.args, node.kwargs)
        new.meta = dict(node.meta)
        order[new] = order[node] + 0.5
        node.replace_all_uses_with(new)
        mutated = node.args[0]
        for user in list(mutated.users):
            if user is not new and user is not node and order.get(user, -1.0) > order[node]:
                user.replace_input_with(mutated, new)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()


def explicit_hardsigmoid(gm) -> None:
    """Rewrite each ``hardsigmoid(x)`` (MobileNetV3's squeeze-excite gate) as ``hardtanh(x + 3, 0, 6) * (1/6)``, its
    definition, so each step is an int8 op with its own learned range (an int8 ADD with a fused RELU6, then an int8
    MUL). litert-torch lowers hardsigmoid itself to an ADD it leaves in float inside the int8 file. The in-place form
    is made out of place first (:func:`out_of_place`)."""
    aten = torch.ops.aten
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.hardsigmoid.default:
            continue
        with gm.graph.inserting_before(node):
            shifted = gm.graph.call_function(aten.add.Tensor, (node.args[0], 3.0))
            clamped = gm.graph.call_function(aten.hardtanh.default, (shifted, 0.0, 6.0))
            gate = gm.graph.call_function(aten.mul.Tensor, (clamped, 1.0 / 6.0))
        for new in (shifted, clamped, gate):
            new.meta = dict(node.meta)  # same shape and dtype as the hardsigmoid
        node.replace_all_uses_with(gate)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()


def restore_eps(graph: nn.Module) -> None:
    """Put back every observer's ``eps`` after ``load_state_dict``.

    torchao's observers treat a state dict without torch's ``_metadata`` (any dict rebuilt from a saved file) as
    version 1 and reset ``eps`` to float32's epsilon, so narrow ranges would then convert to other scales than the
    ones training used (measured: 3 of 23 activation scales in a small MobileNetV2).
    """
    from torchao.quantization.pt2e.observer import ObserverBase

    for m in graph.modules():
        if isinstance(m, ObserverBase) and isinstance(getattr(m, "eps", None), torch.Tensor):
            m.eps.fill_(EPS)


class QatModel(nn.Module):
    """A prepared PT2E graph that ``edgekd.training.loop.fit`` can train.

    Exported graphs refuse ``train()``/``eval()``; here they swap the graph's train/eval ops, and switch observers:
    off in eval (validation never moves the ranges), on while training for the first ``observe_epochs`` epochs, then
    frozen. The epoch count is a buffer, so a resumed run freezes at the same epoch.
    """

    def __init__(self, graph: nn.Module, observe_epochs: int):
        super().__init__()
        self.graph = graph
        self.observe_epochs = observe_epochs
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> QatModel:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
        from torchao.quantization.pt2e.fake_quantize import disable_observer, enable_observer

        if mode:
            move_exported_model_to_train(self.graph)
            self.epochs_started += 1
            observe = int(self.epochs_started) <= self.observe_epochs
        else:
            move_exported_model_to_eval(self.graph)
            observe = False
        self.graph.apply(enable_observer if observe else disable_observer)
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # resume, best epoch
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        restore_eps(self.graph)
        return result


def split_state(float_model: nn.Module, graph: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(float weights under the float model's names, fake-quant state: scales, zero points, observed ranges)."""
    state = {k: v.detach().cpu().clone() for k, v in graph.state_dict().items()}
    names = set(float_model.state_dict())
    missing = names - set(state)
    if missing:
        raise ModelError(f"the QAT graph lost weights of the float model (e.g. {sorted(missing)[0]})")
    return {k: state[k] for k in float_model.state_dict()}, {k: v for k, v in state.items() if k not in names}


def load_quantized(float_model: nn.Module, qat_state: dict[str, torch.Tensor], example: torch.Tensor, dynamic: bool,
                   fold_quantize: bool):  # fmt: skip
    """Re-trace the float model, restore the trained fake-quant state and convert: q/dq ops with the learned ranges."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.fake_quantize import disable_observer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    graph = prepare(float_model, example, dynamic)
    state = {**{k: v for k, v in float_model.state_dict().items()}, **qat_state}
    # (scale / zero-point / range buffers start empty or [1] and are resized by their own load hooks: compare keys)
    diff = sorted(set(graph.state_dict()) ^ set(state))
    try:
        if diff:
            raise ValueError(f"{len(diff)} entries differ, e.g. {diff[0]}")
        graph.load_state_dict(state)
        restore_eps(graph)
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(
            f"the saved QAT state does not fit the re-traced graph ({first}); was it saved by another torch/torchao "
            "version? re-run the qat stage"
        ) from None
    graph.apply(disable_observer)
    move_exported_model_to_eval(graph)
    converted = convert_pt2e(graph, fold_quantize=fold_quantize)
    move_exported_model_to_eval(converted)
    return converted


def fake_quants(qat_state: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Each fake-quant of a QAT state: name, per-channel (weights) or per-tensor (activations), scale, zero point."""
    out = []
    for key, scale in qat_state.items():
        if not key.endswith(".scale"):
            continue
        prefix = key[: -len(".scale")]
        min_val = qat_state.get(f"{prefix}.activation_post_process.min_val")
        per_channel = min_val is not None and min_val.dim() == 1
        out.append({"name": prefix, "per_channel": per_channel, "scale": scale.flatten().double(),
                    "zero_point": qat_state[f"{prefix}.zero_point"].flatten()})  # fmt: skip
    return out


def write_checkpoint(path, float_state: dict[str, torch.Tensor], qat_state: dict[str, torch.Tensor]) -> None:
    """One weights-only file: the float weights where every loader looks (``state_dict``, so load_torch_model and the
    fp32 exports read it as usual) and the fake-quant state the int8 exports read (``qat_state``)."""
    import io

    from edgekd.core.fsutil import atomic_write_bytes

    buf = io.BytesIO()  # through a buffer: the archive is named after the file, and a temp name would change hashes
    torch.save({"state_dict": float_state, "qat_state": qat_state}, buf)
    atomic_write_bytes(path, buf.getvalue())

"""Parameter and MAC counts; MACs are measured by running the model once under torch's FLOP counter."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` with batch 1, on the CPU (the model must be there).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2), so every matmul-like op is in:
    convolutions, linear layers, and the attention matmuls (``bmm``, ``scaled_dot_product_attention``) that hooks on
    Conv2d/Linear miss. Element-wise ops (activations, norms, softmax, bias adds) count nothing, as usual.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, *input_shape[1:])))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2

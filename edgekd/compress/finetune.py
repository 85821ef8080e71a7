"""The loss prune and qat fine-tune with: the teacher's soft targets plus the labels (labels only without a teacher)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distill import hinton_loss
from edgekd.models.io import load_frozen_model


def kd_loss_fn(teacher, temperature: float, alpha: float, label_smoothing: float):
    """A ``fit`` loss: Hinton KD against ``teacher`` (cross-entropy only when ``teacher`` is None)."""

    def loss(logits, y, x):
        if teacher is None:
            return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        with torch.no_grad():  # not inference_mode: the teacher's logits are saved for the student's backward
            t_logits = teacher(x)
        return hinton_loss(logits, t_logits, y, temperature, alpha, label_smoothing)

    return loss


def load_teacher(art, device: str):
    """The frozen teacher, or None when the stage has no teacher."""
    return None if art is None else load_frozen_model(art, device)


def load_float_model(name: str, inputs: dict, ctx, qat_error: str):
    """What prune and qat both start from: the split data, the device, and the float model ``name`` (seeded first).

    ``qat_error`` is the one-line reason a quantization-aware-trained model cannot be taken. Returns
    ``(data, device, artifact, model)``.
    """
    from edgekd.core.errors import ModelError
    from edgekd.data import SplitData
    from edgekd.models.io import load_torch_model
    from edgekd.training.loop import seed_everything

    data = SplitData.load(inputs["dataset"].path)
    art = inputs[name]
    if art.meta.get("qat"):
        raise ModelError(f"model: '{name}' {qat_error}")
    seed_everything(ctx.seed)
    return data, ctx.device(), art, load_torch_model(art)

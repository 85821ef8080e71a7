"""Save and rebuild torch model artifacts: weights plus the spec and data metadata needed to rebuild and feed them."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgekd.core.artifacts import TorchModel
from edgekd.models.checkpoint import load_into, save_state_dict
from edgekd.models.factory import build_model
from edgekd.models.stats import count_macs, count_params


def save_torch_model(name: str, model: nn.Module, spec: dict, data_meta: dict, path: Path, **extra) -> TorchModel:
    model = model.cpu().eval()
    save_state_dict(model, path)
    shape = tuple(data_meta["input_shape"])
    meta = {
        **data_meta,
        "model": spec,
        "params": count_params(model),
        "macs": count_macs(model, shape),
        "precision": "fp32",
        **extra,
    }
    return TorchModel(name, path, meta)


def load_torch_model(art: TorchModel) -> nn.Module:
    meta = art.meta
    model = build_model(
        meta["model"], in_channels=meta["input_shape"][1], num_classes=len(meta["labels"]), pretrained=False
    )
    if meta.get("structure"):  # pruned / BatchNorm-folded: swap in the saved layer shapes (edgekd.compress.structure)
        from edgekd.compress.structure import apply_structure

        apply_structure(model, meta["structure"])
    return load_into(model, art.path).eval()


def load_frozen_model(art: TorchModel, device: str = "cpu") -> nn.Module:
    """A model that teaches: in eval mode on ``device``, no parameter requires a gradient."""
    model = load_torch_model(art).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

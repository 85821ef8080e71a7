"""Text artifacts on disk: the tokenised splits with the teacher's embeddings, and text-student checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.core.artifacts import Artifact, TorchModel
from edgekd.core.fsutil import atomic_path
from edgekd.core.npzfile import check_npz
from edgekd.text.models import build_text_model, param_count
from edgekd.text.train import Split

SPLITS = ("train", "val", "test")


def save_tokens(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_split(art: Artifact, split: str) -> Split:
    check_npz(art.path, keys={f"ids_{split}", f"mask_{split}", f"teacher_{split}"})
    with np.load(art.path, allow_pickle=False) as z:
        return Split(z[f"ids_{split}"], z[f"mask_{split}"], z[f"teacher_{split}"])


def load_array(art: Artifact, key: str) -> np.ndarray:
    check_npz(art.path, keys={key})
    with np.load(art.path, allow_pickle=False) as z:
        return z[key]


def save_text_model(name: str, model: nn.Module, spec: dict, tokens_meta: dict, path: Path, **extra) -> TorchModel:
    model = model.cpu().eval()
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    meta = {
        "task": "text-embedding",
        "text_model": spec,
        "params": param_count(model),
        "precision": "fp32",
        **{
            k: tokens_meta[k]
            for k in (
                "max_length",
                "vocab_size",
                "embedding_dim",
                "pooling",
                "normalize",
                "do_lower_case",
                "teacher_params",
                "vocab_sha256",
            )
            if k in tokens_meta
        },
        **extra,
    }
    return TorchModel(name, path, meta)


def load_text_model(art: Artifact) -> nn.Module:
    m = art.meta
    model = build_text_model(m["text_model"], m["vocab_size"], m["max_length"], m["embedding_dim"])
    model.load_state_dict(torch.load(art.path, map_location="cpu", weights_only=True))
    return model.eval()

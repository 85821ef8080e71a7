"""A Hugging Face image-classification model saved in a local folder (``save_pretrained``), as a teacher or student:
``model: {hf: FOLDER}``. The folder is made here from a tiny ViT config; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from edgekd.core.errors import ModelError
from edgekd.models import build_model

pytest.importorskip("transformers")


def _save_vit(folder, channels=1, labels=4):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=channels, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64, num_labels=labels)  # fmt: skip
    model = ViTForImageClassification(cfg).eval()
    model.save_pretrained(folder)  # config.json + model.safetensors
    return model


def test_saved_model_builds_and_gives_the_same_logits(tmp_path):
    ref = _save_vit(tmp_path / "vit")
    model = build_model({"hf": str(tmp_path / "vit")}, 1, 4)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(pixel_values=x).logits, atol=1e-6)


def test_other_class_count_replaces_the_head_and_says_so(tmp_path, monkeypatch):
    ref = _save_vit(tmp_path / "vit", labels=4)
    said: list[str] = []
    monkeypatch.setattr("edgekd.models.hf.log", said.append)
    model = build_model({"hf": str(tmp_path / "vit")}, 1, 10)
    assert model(torch.rand(1, 1, 16, 16)).shape == (1, 10)
    assert any("head replaced (4 classes saved, the data has 10)" in m for m in said), said
    body = {k: v for k, v in model.model.state_dict().items() if not k.startswith("classifier")}
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in body.items())  # only the head is new


def test_channels_and_missing_folder_are_one_line(tmp_path):
    _save_vit(tmp_path / "vit", channels=3)
    with pytest.raises(ModelError, match="takes 3-channel images but the data has 1"):
        build_model({"hf": str(tmp_path / "vit")}, 1, 4)
    with pytest.raises(ModelError, match=r"has no config\.json .*never downloads"):
        build_model({"hf": str(tmp_path / "nothing")}, 1, 4)


def test_a_pipeline_validates_with_an_hf_teacher(tmp_path):
    from edgekd.core.config import key_dump
    from edgekd.core.loader import validate_document

    _save_vit(tmp_path / "vit", labels=10)
    doc = {
        "name": "hf",
        "data": {"image_size": 16},
        "stages": [{"stage": "teacher", "model": {"hf": str(tmp_path / "vit")}, "train": {"epochs": 1}}],
    }
    cfg = validate_document(doc)
    assert cfg.stages[0].model.as_dict()["hf"] == str(tmp_path / "vit")
    zoo = validate_document({**doc, "stages": [{"stage": "teacher"}]})
    assert "hf" not in key_dump(zoo.stages[0])["model"]  # added later: a zoo teacher's cache key is unchanged

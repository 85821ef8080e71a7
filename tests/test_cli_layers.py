"""``edgekd layers MODEL``: the tap names of a zoo model, a user class and a saved Hugging Face folder, with output
shapes; every listed name is one a feature term accepts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.cli.layers import layer_table
from edgekd.distill.taps import check_layers
from edgekd.models import build_model


def test_zoo_model_lists_its_taps_with_shapes():
    rows = layer_table("vit_tiny", 1, 32, 10)
    names = [r[0] for r in rows]
    assert "blocks.0.attn.probs" in names and "patch_embed" in names
    probs = next(r for r in rows if r[0] == "blocks.0.attn.probs")
    assert probs[2] == "1x4x64x64"  # heads x tokens x tokens: 32/4 = 8, 8x8 = 64 patches
    assert check_layers(build_model({"name": "vit_tiny"}, 1, 10), names, "student") == []


def test_user_class_and_hf_folder(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, in_channels, num_classes):\n"
        "        super().__init__()\n"
        "        self.body = nn.Conv2d(in_channels, 8, 3, padding=1)\n"
        "        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))\n"
        "    def forward(self, x):\n"
        "        return self.head(self.body(x))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = {r[0]: r for r in layer_table("mynets:Net", 3, 16, 5)}
    assert rows["body"][2] == "1x8x16x16" and rows["head.2"][2] == "1x5" and rows["head.2"][3] == 45
    pytest.importorskip("transformers")
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64, num_labels=5)  # fmt: skip
    ViTForImageClassification(cfg).save_pretrained(tmp_path / "vit")
    names = [r[0] for r in layer_table(str(tmp_path / "vit"), 3, 16, 5)]
    assert "model.vit.layers.0" in names and "model.classifier" in names  # transformers 5 naming


def test_cli_prints_the_table_and_refuses_bad_input_in_one_line():
    runner = CliRunner()
    res = runner.invoke(app, ["layers", "tiny_cnn", "--channels", "1", "--size", "16"])
    assert res.exit_code == 0 and "tiny_cnn:" in res.output and "features.0" in res.output
    res = runner.invoke(app, ["layers", "tiny_cnn", "--size", "4"])
    assert res.exit_code == 2 and "--size 8..1024" in res.output

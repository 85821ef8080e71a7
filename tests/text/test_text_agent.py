"""The device agent runs a two-input text model: tokenises with devices/wordpiece.py, times it, returns embeddings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _shared import ROOT

from edgekd.core.errors import ModelError
from edgekd.formats.runner import load_runner
from edgekd.text.export import attach_text_metadata, check_model_vocab, export_onnx_text, text_metadata
from edgekd.text.models import build_text_model

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdefghijklmnopqrstuvwxyz", "the", "cat", "sat", "on", "mat", "."]
SENTENCES = ["the cat sat on the mat.", "a cat.", "the mat sat on the cat on the mat on the mat."]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_text_model(
        {"name": "text_transformer", "kwargs": {"hidden": 8, "layers": 1, "heads": 2, "ffn": 16, "embed_dim": 4}},
        len(VOCAB),
        8,
        6,
    ).eval()
    path = tmp_path_factory.mktemp("text") / "tiny.onnx"
    export_onnx_text(model, 8, path)
    md = text_metadata({"max_length": 8, "precision": "fp32"}, path, VOCAB)
    attach_text_metadata(path, md)
    return model, path, md


def test_runner_embeds_like_pytorch_and_counts_truncation(tiny_onnx):
    model, path, md = tiny_onnx
    from edgekd.formats.metadata import read_metadata

    assert read_metadata(path)["vocab"] == VOCAB  # the file carries its vocabulary
    runner = load_runner(path, md)
    got = runner.embed(SENTENCES)
    ids, mask = runner.prepare_text(SENTENCES)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))).numpy()
    assert np.abs(got - ref).max() < 1e-5
    assert runner.truncated >= 1  # the long sentence was cut at 8 tokens


def test_agent_cli_returns_latency_and_embeddings(tiny_onnx, tmp_path):
    _, path, md = tiny_onnx
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps(md))
    data = tmp_path / "eval.npz"
    np.savez(data, text=np.array(SENTENCES))
    out = tmp_path / "emb.npy"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "devices" / "agent.py"),
            "--model",
            str(path),
            "--meta",
            str(meta),
            "--data",
            str(data),
            "--runs",
            "3",
            "--warmup",
            "1",
            "--preds-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    res = json.loads(proc.stdout)
    assert res["status"] == "ok", res
    assert res["latency_ms"]["p50"] > 0 and res["accuracy"] is None and res["max_length"] == 8
    assert np.load(out).shape == (3, 6)


def test_wrong_vocabulary_is_one_line_error(tiny_onnx, tmp_path):
    _, path, md = tiny_onnx
    with pytest.raises(ModelError, match="vocabulary has 3 tokens but the model expects"):
        check_model_vocab(md, ["a", "b", "c"])
    from edgekd.formats.runner import agent

    with pytest.raises(agent().AgentError, match="vocabulary has 5 tokens"):
        load_runner(path, {**md, "vocab": VOCAB[:5]})

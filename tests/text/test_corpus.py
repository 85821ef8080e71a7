"""The text transfer set: stdlib docstrings, a user's .txt / .jsonl, bad lines counted, seeded hash splits."""

from __future__ import annotations

import pytest

from edgekd.core.errors import DataError
from edgekd.text.corpus import (
    build_corpus,
    docstring_sentences,
    read_user_text,
    sentence_ok,
    split_of,
    stdlib_sentences,
)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_txt_skips_and_counts_empty_and_non_utf8_lines(tmp_path):
    f = _write(tmp_path / "s.txt", b"First sentence here.\n\n   \nSecond one \xff\xfe broken.\nThird sentence.\n")
    pairs, counts = read_user_text(f)
    assert [p[0] for p in pairs] == ["First sentence here.", "Third sentence."]
    assert counts == {"skipped_empty": 2, "skipped_not_utf8": 1}


def test_non_utf8_fail_mode_names_file_and_line(tmp_path):
    f = _write(tmp_path / "s.txt", b"ok line\n\xff bad\n")
    with pytest.raises(DataError, match=r"s\.txt:2: not UTF-8") as exc:
        read_user_text(f, on_bad_line="fail")
    assert "\n" not in str(exc.value)


def test_jsonl_reads_text_and_label_and_counts_bad_lines(tmp_path):
    f = _write(
        tmp_path / "s.jsonl", b'{"text": "A cat sat.", "label": "pets"}\nnot json\n{"txt": 1}\n{"text": "A dog."}\n'
    )
    pairs, counts = read_user_text(f)
    assert pairs == [("A cat sat.", "pets"), ("A dog.", None)]
    assert counts["skipped_bad_json"] == 2


@pytest.mark.parametrize("name,body", [("a.csv", b"x\n"), ("empty.txt", b"\n\n")])
def test_unusable_files_are_one_line_errors(tmp_path, name, body):
    with pytest.raises(DataError) as exc:
        read_user_text(_write(tmp_path / name, body))
    assert "\n" not in str(exc.value)


def test_split_is_a_stable_hash_of_the_sentence():
    s = "The same sentence always lands in the same split."
    assert {split_of(s, 0, 0.1, 0.1) for _ in range(3)} == {split_of(s, 0, 0.1, 0.1)}
    splits = [split_of(f"sentence number {i}", 0, 0.2, 0.2) for i in range(2000)]
    assert 0.15 < splits.count("test") / 2000 < 0.25 and 0.15 < splits.count("val") / 2000 < 0.25


def test_file_corpus_dedupes_and_fills_every_split(tmp_path):
    lines = [f"Sentence {i} talks about topic {i % 7}." for i in range(200)] + ["Sentence 1 talks about topic 1."]
    f = tmp_path / "c.txt"
    f.write_text("\n".join(lines) + "\n")
    c = build_corpus("file", str(f), val_fraction=0.2, test_fraction=0.2)
    assert sum(len(c.texts[s]) for s in ("train", "val", "test")) == 200
    assert c.counts["skipped_duplicate"] == 1


def test_docstring_sentences_filter_code_and_tables(tmp_path):
    doc = "Return the sum of the two numbers given.\n\n>>> add(1, 2)\n3\n\nThis is fine. And so is this one here."
    ok = [s for s in docstring_sentences(doc) if sentence_ok(s, min_chars=10)]
    assert ok == ["Return the sum of the two numbers given.", "And so is this one here."]


def test_stdlib_reader_parses_without_importing(tmp_path):
    pkg = tmp_path / "email"
    pkg.mkdir()
    (pkg / "mod.py").write_text('"""Parse the headers of an email message into a dictionary."""\nraise SystemExit\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    assert stdlib_sentences(tmp_path) == [("Parse the headers of an email message into a dictionary.", "email")]

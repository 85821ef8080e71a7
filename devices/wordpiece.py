"""BERT WordPiece tokenisation in pure Python, for the device agent (stdlib only: no tokenizers, no transformers).

It reproduces Hugging Face's ``BertTokenizer`` with ``do_lower_case=True`` (the uncased MiniLM / BERT vocabularies):
clean the text (drop control characters, map whitespace to spaces), put spaces around CJK ideographs, lowercase and
strip accents (NFD, drop combining marks), split on whitespace and punctuation, then greedy longest-match-first
WordPiece with ``##`` continuations; a word of more than 100 characters or with no match is ``[UNK]``. The result is
``[CLS] ... [SEP]``, truncated to ``max_length`` and padded with ``[PAD]`` (id 0 in BERT vocabularies), plus the
attention mask. edgekd's tests check that it gives the teacher tokenizer's ids on the whole test split.
"""

from __future__ import annotations

import unicodedata


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # ASCII symbols count as punctuation for BERT although Unicode calls some of them symbols (^ $ `)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPiece:
    """``WordPiece(vocab).encode(text, max_length) -> (ids, mask)``; ``vocab`` is the lines of ``vocab.txt``."""

    def __init__(self, vocab: list[str], lowercase: bool = True, max_chars_per_word: int = 100):
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in self.vocab:
                raise ValueError(f"the vocabulary has no {special} token: not a BERT WordPiece vocabulary")
        self.lowercase, self.max_chars = lowercase, max_chars_per_word
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.unk, self.pad = self.vocab["[UNK]"], self.vocab["[PAD]"]

    @classmethod
    def from_file(cls, path: str, lowercase: bool = True) -> WordPiece:
        with open(path, encoding="utf-8") as fh:
            return cls([line.rstrip("\n") for line in fh], lowercase)

    def basic_tokens(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                chars.append(" ")
            elif _is_cjk(cp):
                chars += [" ", ch, " "]
            else:
                chars.append(ch)
        words = []
        for word in "".join(chars).split():
            if self.lowercase:
                word = word.lower()
                word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def word_ids(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def tokenize_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without the special tokens and without truncation."""
        return [i for w in self.basic_tokens(text) for i in self.word_ids(w)]

    def encode(self, text: str, max_length: int) -> tuple[list[int], list[int], bool]:
        """``[CLS] tokens [SEP]`` truncated and padded to ``max_length``: (ids, attention mask, truncated?)."""
        body = self.tokenize_ids(text)
        truncated = len(body) > max_length - 2
        ids = [self.cls, *body[: max_length - 2], self.sep]
        mask = [1] * len(ids) + [0] * (max_length - len(ids))
        return ids + [self.pad] * (max_length - len(ids)), mask, truncated

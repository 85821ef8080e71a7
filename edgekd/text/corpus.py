"""Real English text available offline: the docstrings of Python's standard library, or the user's own file.

Why the stdlib docstrings: they are present wherever Python is (nothing to download, nothing to vendor), they are
written English prose about many topics, their licence is known (the Python Software Foundation License, the same
as the interpreter's source), and each sentence comes with a category for free — the top-level module it documents
(``email``, ``asyncio``, ``xml``...), which the linear probe uses. The source files are parsed with ``ast``, never
imported, so no module's import-time side effects run.

A user's own text is a ``.txt`` (one sentence per line) or a ``.jsonl`` (objects with ``text`` and an optional
``label``). Bad input never crashes: empty lines are skipped and counted, a line that is not UTF-8 is skipped and
counted (``on_bad_line: skip``) or is a one-line error naming the file and line (``fail``).

Splits are assigned by a seeded hash of the sentence, not by its position, so adding text to a corpus never moves
an existing sentence to another split.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.core.errors import DataError

SPLITS = ("train", "val", "test")
STDLIB_LICENCE = "Python Software Foundation License (docstrings of the CPython standard library)"
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_CODE_HINTS = re.compile(r">>>|\.\.\.\s|==|!=|\{|\}|::|\w\(\)|\w=\w|\$|`|\\\\|->")


@dataclass
class Corpus:
    """Sentences with optional labels, split into train/val/test, and what was dropped on the way (counts)."""

    texts: dict[str, list[str]]
    labels: dict[str, list[str | None]]
    source: str
    licence: str
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "licence": self.licence,
            "counts": self.counts,
            "splits": {s: {"text": self.texts[s], "label": self.labels[s]} for s in SPLITS},
        }

    @staticmethod
    def from_json(doc: dict) -> Corpus:
        sp = doc["splits"]
        return Corpus(
            {s: sp[s]["text"] for s in SPLITS},
            {s: sp[s]["label"] for s in SPLITS},
            doc["source"],
            doc["licence"],
            doc.get("counts", {}),
        )


def _clean(text: str) -> str:
    return " ".join(text.split())


def sentence_ok(s: str, min_chars: int = 30, max_chars: int = 300) -> bool:
    """Prose, not code or tables: long enough, mostly letters and spaces, no code-looking tokens."""
    if not min_chars <= len(s) <= max_chars or _CODE_HINTS.search(s):
        return False
    letters = sum(c.isalpha() or c == " " for c in s)
    return letters / len(s) >= 0.85 and len(s.split()) >= 5 and s[0].isupper()


def docstring_sentences(doc: str) -> list[str]:
    """Paragraphs of a docstring split into sentences; indented blocks (examples, tables) are left out."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        lines = para.splitlines()
        if not lines or any(ln.startswith((" " * 8, "\t\t")) for ln in lines[1:]):
            continue
        out += [s.strip() for s in _SENT_END.split(_clean(para)) if s.strip()]
    return out


def stdlib_sentences(root: Path | None = None, min_chars: int = 30, max_chars: int = 300) -> list[tuple[str, str]]:
    """(sentence, top-level module) pairs from every docstring in the stdlib, deduplicated, in a stable order."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"cannot find Python's standard library at {root}")
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel[0] in ("site-packages", "dist-packages", "test", "idlelib", "lib2to3") or "tests" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        family = rel[0].removesuffix(".py").lstrip("_") or rel[0]
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node, clean=True)
            for s in docstring_sentences(doc or ""):
                if sentence_ok(s, min_chars, max_chars) and s.lower() not in seen:
                    seen.add(s.lower())
                    out.append((s, family))
    return out


def package_sentences(packages: list[str], exclude: set[str]) -> list[str]:
    """Docstring sentences of installed packages (extra transfer text), minus ``exclude`` (lowercased).

    The packages' files are parsed, never imported (:func:`edgekd.text.packages.package_dir`).
    """
    from edgekd.text.packages import package_dir

    out: list[str] = []
    for name in packages:
        try:
            folder = package_dir(name)
        except ValueError as exc:
            raise DataError(f"transfer package {exc}: give installed packages such as numpy") from None
        if folder is None:
            raise DataError(f"transfer package '{name}' is not installed (pip install {name}, or drop it)")
        for s, _ in stdlib_sentences(folder):
            if s.lower() not in exclude:
                exclude.add(s.lower())
                out.append(s)
    return out


def read_user_text(path: Path, on_bad_line: str = "skip") -> tuple[list[tuple[str, str | None]], Counter]:
    """Sentences (and labels) from a ``.txt`` (one per line) or ``.jsonl`` (``text``, optional ``label``) file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError(f"{path.name}: expected a .txt (one sentence per line) or a .jsonl (a 'text' field per line)")
    counts: Counter = Counter()
    out: list[tuple[str, str | None]] = []
    with open(path, "rb") as fh:
        for no, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                if on_bad_line == "fail":
                    raise DataError(f"{path}:{no}: not UTF-8 text (re-save the file as UTF-8)") from None
                counts["skipped_not_utf8"] += 1
                continue
            if not line:
                counts["skipped_empty"] += 1
                continue
            label = None
            if path.suffix == ".jsonl":
                try:
                    obj = json.loads(line)
                    text, label = obj["text"], obj.get("label")
                    if not isinstance(text, str):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    if on_bad_line == "fail":
                        raise DataError(f"{path}:{no}: expected a JSON object with a 'text' string") from None
                    counts["skipped_bad_json"] += 1
                    continue
                text = _clean(text)
                if not text:
                    counts["skipped_empty"] += 1
                    continue
                line = text
            out.append((line, None if label is None else str(label)))
    if not out:
        raise DataError(f"{path}: no sentences found ({dict(counts) or 'the file is empty'})")
    return out, counts


def split_of(text: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """The split a sentence belongs to: a seeded hash of its text, stable when the corpus grows."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big") / 2**64
    return "test" if h < test_fraction else "val" if h < test_fraction + val_fraction else "train"


def build_corpus(
    source: str,
    path: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_sentences: int | None = None,
    on_bad_line: str = "skip",
    transfer_packages: list[str] | None = None,
) -> Corpus:
    """The split corpus from ``source``: ``stdlib`` (docstrings), or ``file`` (a user's .txt / .jsonl at ``path``).

    ``transfer_packages``: the docstrings of these installed packages are added to the training split only, without
    labels (more text to distil on; the validation and test splits, and so every reported figure, are unchanged).
    """
    counts: Counter = Counter()
    if source == "stdlib":
        pairs: list[tuple[str, str | None]] = list(stdlib_sentences())
        name, licence = "stdlib-docstrings", STDLIB_LICENCE
    elif source == "file":
        if not path:
            raise DataError("text source 'file' needs 'path' (a .txt or .jsonl file)")
        pairs, counts = read_user_text(Path(path).expanduser(), on_bad_line)
        name, licence = f"file:{Path(path).name}", "the user's own text"
    else:
        raise DataError(f"unknown text source '{source}' (expected 'stdlib' or 'file')")
    if source == "file":  # dedupe the user's text too: a repeated sentence would sit in two splits' metrics
        before, uniq = len(pairs), {}
        for t, lab in pairs:
            uniq.setdefault(t, lab)
        pairs = list(uniq.items())
        counts["skipped_duplicate"] += before - len(pairs)
    if max_sentences is not None and len(pairs) > max_sentences:  # a seeded, order-free subsample
        pairs = sorted(pairs, key=lambda p: hashlib.sha256(f"sub{seed}:{p[0]}".encode()).digest())[:max_sentences]
        pairs.sort(key=lambda p: p[0])
    texts: dict[str, list[str]] = {s: [] for s in SPLITS}
    labels: dict[str, list[str | None]] = {s: [] for s in SPLITS}
    for t, lab in pairs:
        sp = split_of(t, seed, val_fraction, test_fraction)
        texts[sp].append(t)
        labels[sp].append(lab)
    if transfer_packages:
        extra = package_sentences(transfer_packages, {t.lower() for t, _ in pairs})
        texts["train"] += extra
        labels["train"] += [None] * len(extra)
        counts["transfer_packages"] = len(extra)
    for s in SPLITS:
        counts[s] = len(texts[s])
        if not texts[s]:
            raise DataError(f"the {s} split is empty ({len(pairs)} sentences in all): give more text")
    return Corpus(texts, labels, name, licence, dict(counts))

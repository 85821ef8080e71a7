"""Refuse a ``.pt2`` that would run code when ``torch.export.load`` reads it. Stdlib only; travels next to agent.py.

What torch 2.13's loader does with an archive's members (``torch/export/pt2_archive/_package.py``,
``torch/_export/serde/serialize.py``), and so where a crafted file runs code:

* ``data/sample_inputs/<model>.pt`` goes through ``torch.load(weights_only=True)`` and, when that fails, again with
  ``weights_only=False``: any pickle that the safe loader rejects is then executed;
* a weight or constant whose payload config says ``use_pickle``, a constant named ``custom_obj_*`` or
  ``opaque_obj_*``, and the legacy ``data/weights/<model>.pt`` / ``data/constants/<model>.pt`` are unpickled with no
  restriction at all;
* ``data/aotinductor/`` holds a compiled shared library, which is loaded;
* an archive that fails to load is retried as the torch <= 2.7 zip, whose top-level ``*.pt`` members take the same
  weights_only=False fallback;
* every ``expr_str`` of ``models/<model>.json`` (symbolic shapes) is passed to ``sympy.sympify``, that is ``eval``.

``torch.export.save`` writes none of these except the sample inputs, which are plain tensors. So a file is accepted
only if every member is one that ``torch.export.save`` writes, under one root folder, no payload is pickled, the
sample inputs load weights-only, and the shape expressions use nothing but sympy's constructors.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_MEMBERS = re.compile(
    r"(archive_format|archive_version|byteorder|version|\.data/version|\.data/serialization_id"
    r"|models/\w+\.json|data/sample_inputs/\w+\.pt"
    r"|data/weights/weight_\d+|data/weights/\w+_weights_config\.json"
    r"|data/constants/tensor_\d+|data/constants/\w+_constants_config\.json"
    r"|extra/[\w.-]+)\Z"
)
_PAYLOADS = {"data/weights/": re.compile(r"weight_\d+\Z"), "data/constants/": re.compile(r"tensor_\d+\Z")}
# Names a shape expression may call: sympy's srepr constructors and torch.utils._sympy.functions (the deserializer's
# own table). Anything else -- eval, getattr, S (sympify again), attribute access -- is refused.
_SYMPY_NAMES = frozenset(
    {
        "Symbol",
        "Integer",
        "Float",
        "Rational",
        "Add",
        "Mul",
        "Pow",
        "Mod",
        "Max",
        "Min",
        "Abs",
        "floor",
        "ceiling",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "Equality",
        "Unequality",
        "StrictLessThan",
        "StrictGreaterThan",
        "LessThan",
        "GreaterThan",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ExprCondPair",
        "BooleanTrue",
        "BooleanFalse",
        "true",
        "false",
        "True",
        "False",
        "oo",
        "zoo",
        "nan",
        "Infinity",
        "NegativeInfinity",
        "ComplexInfinity",
        "NaN",
        "Half",
        "One",
        "Zero",
        "NegativeOne",
        "IntInfinity",
        "NegativeIntInfinity",
        "int_oo",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
    }
)
_SYMBOL = re.compile(r"[a-z]+\d+\Z")  # s0, u3: the deserializer's own symbols
_SYMPY_OPS = frozenset(
    {"(", ")", ",", "=", "+", "-", "*", "/", "**", "%", "<", ">", "<=", ">=", "==", "!=", "&", "|", "~"}
)


class UnsafePt2(Exception):
    """The archive holds something torch would execute; the message is one line, without the file name."""


def check_pt2(path: Path, load_weights_only: Callable[[bytes], Any]) -> None:
    """Raise :class:`UnsafePt2` unless ``path`` holds only what ``torch.export.save`` writes, in its safe form.

    Args:
        path: the ``.pt2`` file.
        load_weights_only: ``torch.load(..., weights_only=True)`` of a bytes object; it must raise on a pickle that
            is not plain tensors and containers.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafePt2(f"not a torch.export archive (a zip file): {exc}") from None
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if not names:
            raise UnsafePt2("empty archive")
        root = names[0].split("/", 1)[0]
        seen: set[str] = set()
        for name in names:
            if name in seen:  # zipfile reads the last copy, torch the first: what is checked must be what is loaded
                raise UnsafePt2(f"member '{name}' appears twice")
            seen.add(name)
            head, _, rel = name.partition("/")
            if head != root or not _MEMBERS.match(rel):
                raise UnsafePt2(f"member '{name}' is not one torch.export.save writes (refused: it may hold code)")
        for name in names:
            rel = name.partition("/")[2]
            if rel.endswith(("_weights_config.json", "_constants_config.json")):
                _check_payload_config(archive, name, rel)
            elif rel.startswith("data/sample_inputs/"):
                _check_weights_only(archive, name, load_weights_only)
            elif rel.startswith("models/"):
                _check_shape_expressions(archive, name)


def _json(archive: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(archive.read(name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsafePt2(f"member '{name}' is not valid JSON: {exc}") from None


def _check_payload_config(archive: zipfile.ZipFile, name: str, rel: str) -> None:
    """Every weight and constant must be raw tensor bytes: ``use_pickle`` (and custom/opaque objects) unpickle."""
    folder = rel.rsplit("/", 1)[0] + "/"
    doc = _json(archive, name)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise UnsafePt2(f"member '{name}' has no 'config' object")
    for fqn, entry in config.items():
        if not isinstance(entry, dict):
            raise UnsafePt2(f"member '{name}': entry '{fqn}' is not an object")
        if entry.get("use_pickle"):
            raise UnsafePt2(f"member '{name}': '{fqn}' is stored as a pickle, which torch loads without restriction")
        path_name = entry.get("path_name")
        if not (isinstance(path_name, str) and _PAYLOADS[folder].match(path_name)):
            raise UnsafePt2(f"member '{name}': '{fqn}' points at {path_name!r}, not a raw tensor payload")


def _check_weights_only(archive: zipfile.ZipFile, name: str, load_weights_only: Callable[[bytes], Any]) -> None:
    """torch retries a failed weights-only load without the restriction; so it must not fail here."""
    try:
        load_weights_only(archive.read(name))
    except Exception as exc:  # the safe unpickler's refusal, or a corrupt member: either way torch would fall back
        raise UnsafePt2(f"member '{name}' is not a weights-only pickle of tensors ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """torch's refusal in a few words: its 'WeightsUnpickler error' line (which global), not its advice to load the
    file unsafely."""
    lines = [re.sub(r"\x1b\[[0-9;]*m|\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    why = next((ln.split(":", 1)[1] for ln in lines if ln.startswith("WeightsUnpickler error:")), None)
    why = why or next((ln for ln in lines if ln), type(exc).__name__)
    return why.strip().split(". ")[0][:200]  # the first sentence: what was refused


def _check_shape_expressions(archive: zipfile.ZipFile, name: str) -> None:
    stack = [_json(archive, name)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr_str":
                    _check_expression(value, name)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _check_expression(expr: Any, name: str) -> None:
    """``expr`` is eval'd by sympy: only constructor calls, the deserializer's symbols, literals and arithmetic."""
    if not isinstance(expr, str):
        raise UnsafePt2(f"member '{name}': a shape expression is not a string")
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(expr).readline) if t.type != tokenize.ENDMARKER]
    except (tokenize.TokenError, SyntaxError) as exc:
        raise UnsafePt2(f"member '{name}': shape expression {expr[:80]!r} does not parse ({exc})") from None
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if tok.type in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.NL):
            continue
        if tok.type == tokenize.STRING and tok.string[0] in "'\"":  # a symbol's name; an f-string would run code
            continue
        if tok.type == tokenize.NAME and (tok.string in _SYMPY_NAMES or _SYMBOL.match(tok.string) or nxt == "="):
            continue  # a keyword argument's name (positive=True) is not evaluated
        if tok.type == tokenize.OP and tok.string in _SYMPY_OPS:
            continue
        raise UnsafePt2(f"member '{name}': shape expression {expr[:80]!r} uses {tok.string!r}, which sympy would eval")

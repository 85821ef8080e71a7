"""YAML from users' files, bounded: pipelines, device profiles and ``--set`` values.

``yaml.safe_load`` builds no objects from tags, but it still trusts the size of what it reads: a "billion laughs"
document (an anchor repeated through nested aliases) is a few hundred bytes that expand to billions of values as soon
as something walks them (validation, hashing, JSON), and a 50 MB list takes minutes to compose. So every YAML file
and ``--set`` value edgekd reads goes through :func:`load_text`:

* at most :data:`MAX_YAML_BYTES` of text (the shipped pipelines and profiles are under 5 KB);
* at most :data:`MAX_YAML_VALUES` values once aliases are expanded. The composed node graph keeps an alias as a
  reference to its anchor's node, so the expanded size is counted over that graph with memoised sizes (each alias
  counts its anchor's whole size each time it is used) without ever building the expanded object;
* integers of at most :data:`MAX_INT_DIGITS` digits (Python refuses to convert strings of more than 4,300 digits,
  and no pipeline value comes close to 100);
* no alias inside its own anchor (a value that contains itself).

The limits are fixed: a pipeline that needs more is holding data that belongs in a data file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edgekd.core.errors import ConfigError

MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000
MAX_INT_DIGITS = 100
_INT_PREFIX = re.compile(r"^[-+]?(0[xXoObB])?")


class _Loader(yaml.SafeLoader):
    """A SafeLoader that stops composing once the document has more nodes than any expansion may have: a long list
    fails after a fraction of its text instead of after composing all of it."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.nodes = 0

    def compose_node(self, parent, index):
        self.nodes += 1
        if self.nodes > MAX_YAML_VALUES:
            raise _TooBig(self.peek_event().start_mark)
        return super().compose_node(parent, index)


class _TooBig(Exception):
    def __init__(self, mark):
        self.mark = mark


def read_text(path: Path, what: str) -> str:
    """The text of a YAML file, refusing one larger than :data:`MAX_YAML_BYTES` before reading it whole."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} '{path}': {exc}") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{what} '{path}' is larger than {MAX_YAML_BYTES >> 20} MB: edgekd reads YAML files up to that size "
            "(keep data in data files, not in the YAML)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {what} '{path}': {exc}") from None


def _where(where: str, node_or_mark: Any, lines: bool, loc: tuple = ()) -> str:
    """``file:line: dotted.key`` (the line only for files, the key only below the top level)."""
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    out = f"{where}:{mark.line + 1}" if lines and mark is not None else where
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return f"{out}: {key}" if key else out


def _children(node: yaml.Node, loc: tuple) -> list[tuple[yaml.Node, tuple]]:
    if isinstance(node, yaml.SequenceNode):
        return [(child, (*loc, i)) for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(key, (*loc, name)), (value, (*loc, name))]
        return out
    return []


def _check_int(node: yaml.ScalarNode, loc: tuple, where: str, lines: bool) -> None:
    if node.tag != "tag:yaml.org,2002:int":
        return
    digits = len(_INT_PREFIX.sub("", node.value.replace("_", "")))
    if digits > MAX_INT_DIGITS:
        raise ConfigError(
            f"{_where(where, node, lines, loc)}: an integer of {digits:,} digits is too large "
            f"(edgekd accepts at most {MAX_INT_DIGITS} digits)"
        )


def check_expanded(root: yaml.Node, where: str, lines: bool = True) -> int:
    """The number of values ``root`` holds with every alias expanded; ConfigError past :data:`MAX_YAML_VALUES`, on an
    alias inside its own anchor and on an over-long integer. Iterative (no recursion limit), each node visited once."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # nodes whose children are being measured: meeting one again is a cycle
    stack: list[tuple[yaml.Node, tuple, bool]] = [(root, (), False)]
    while stack:
        node, loc, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child, _ in _children(node, loc))
            if size > MAX_YAML_VALUES:
                raise ConfigError(
                    f"{_where(where, node, lines, loc)}: the YAML expands to more than {MAX_YAML_VALUES:,} "
                    "values (each *alias counts as a full copy of its &anchor): write it out plainly, or keep data "
                    "in a data file"
                )
            sizes[key] = size
        elif key in sizes:
            continue
        elif key in open_nodes:
            raise ConfigError(f"{_where(where, node, lines, loc)}: a YAML alias refers to a value containing it")
        elif isinstance(node, yaml.ScalarNode):
            _check_int(node, loc, where, lines)
            sizes[key] = 1
        else:
            open_nodes.add(key)
            stack.append((node, loc, True))
            stack += [(child, sub, False) for child, sub in reversed(_children(node, loc))]
    return sizes[id(root)]


def load_text(text: str, where: str, lines: bool = True) -> tuple[Any, yaml.Node | None]:
    """Parse bounded YAML ``text``: (document, root node for error lines). ``where`` names it in errors (with line
    numbers when ``lines``). Malformed YAML raises ``yaml.YAMLError``; everything over a limit a ConfigError."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: YAML text is longer than {MAX_YAML_BYTES >> 20} MB (keep data in data files)")
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        check_expanded(root, where, lines)
        try:
            return loader.construct_document(root), root
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. '!!int abc', '!!float x'
            raise ConfigError(f"{where}: malformed YAML value: {' '.join(str(exc).split())[:200]}") from None
    except _TooBig as exc:
        raise ConfigError(
            f"{_where(where, exc.mark, lines)}: the YAML holds more than {MAX_YAML_VALUES:,} values "
            "(keep data in data files, not in the YAML)"
        ) from None
    finally:
        loader.dispose()

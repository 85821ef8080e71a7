"""Fuzz the YAML loader and validator: every document is either a valid config or a ConfigError (exit 2) whose
message is one line (the CLI prints several errors one per line)."""

import copy
import re

import yaml
from _shared import tiny_pipeline_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.core.validation import parse_yaml_text

FUZZ_EXAMPLES = 600

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["cpu", "digits", "teacher", "distill", "fp32", "int8", "litert-torch", "1e999", "-1", ""]),
)
values = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids, max_size=3)),
    max_leaves=12,
)
BASE = tiny_pipeline_doc()
STAGE_KEYS = sorted({k for s in BASE["stages"] for k in s} | {"temperature", "alpha", "precisions", "threads"})


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


ALL_PATHS = [p for p in _paths(BASE) if p]


@st.composite
def documents(draw):
    """The tiny pipeline with a few random edits: replaced values, deleted keys, unknown keys, deep nesting."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = doc
        try:
            for p in path[:-1]:
                parent = parent[p]
            action = draw(st.sampled_from(["replace", "delete", "unknown", "nest", "stage_key"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "unknown" and isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
            elif action == "nest":
                deep = draw(scalars)
                for _ in range(draw(st.integers(1, 200))):
                    deep = [deep]
                parent[path[-1]] = deep
            elif action == "stage_key" and isinstance(parent, dict):
                parent[draw(st.sampled_from(STAGE_KEYS))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def _text(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents())
def test_fuzzed_documents_validate_or_fail_in_one_line(doc):
    try:
        parsed, root = parse_yaml_text(_text(doc), "fuzz.yaml")
        validate_document(parsed, root, "fuzz.yaml")
    except ConfigError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "Traceback" not in msg
        assert exc.exit_code == 2


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents() | st.text(max_size=200))
def test_fuzzed_files_through_the_cli_exit_0_or_2(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text(doc if isinstance(doc, str) else _text(doc), encoding="utf-8")
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code in (0, 2), res.output
    assert "Traceback" not in res.output
    if res.exit_code == 2:  # one line, or a heading "error: N errors in FILE:" and one indented line per error
        first, *more = res.output.strip().splitlines()
        assert first.startswith("error:"), res.output
        if more:
            n = int(re.match(r"error: (\d+) errors in .*:$", first).group(1))
            assert len(more) == n and all(line.startswith("  ") and line.strip() for line in more), res.output

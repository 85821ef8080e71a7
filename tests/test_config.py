import re

import pytest
from _shared import ROOT
from pydantic import Field

from edgekd.core.config import Strict, added_later, key_dump
from edgekd.core.errors import ConfigError
from edgekd.core.loader import load_pipeline, validate_document
from edgekd.core.validation import apply_overrides


def test_default_pipeline_is_valid():
    cfg = load_pipeline(ROOT / "pipelines" / "mobile_vision.yaml")
    assert [s.stage for s in cfg.stages] == [
        "teacher",
        "distill",
        "export_onnx",
        "convert_tflite",
        "benchmark",
        "report",
    ]


def test_unknown_key_names_yaml_path_and_line(write_pipeline):
    path = write_pipeline("name: x\nstages:\n  - stage: teacher\n  - stage: distill\n    temprature: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    msg = str(exc.value)
    assert "stages[1].temprature" in msg and "unknown key" in msg and f"{path}:5" in msg
    assert "\n" not in msg


def test_unknown_stage_lists_known_ones(write_pipeline):
    with pytest.raises(ConfigError, match=r"unknown stage 'distil'.*did you mean 'distill'.*known: benchmark"):
        load_pipeline(write_pipeline("stages:\n  - stage: distil\n"))


def test_unknown_model_lists_known_ones(write_pipeline, tiny_doc):
    tiny_doc["stages"][1]["student"] = {"name": "mobilenet"}
    with pytest.raises(ConfigError, match=r"unknown model 'mobilenet'.*known: .*mobilenetv2_student"):
        load_pipeline(write_pipeline(tiny_doc))


def test_wrong_type_is_reported_with_path(write_pipeline, tiny_doc):
    tiny_doc["stages"][0]["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match=r"stages\[0\]\.train\.epochs: Input should be a valid integer"):
        load_pipeline(write_pipeline(tiny_doc))


def test_missing_and_malformed_files(tmp_path, write_pipeline):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"pipe.yaml:\d+: malformed YAML"):
        load_pipeline(write_pipeline("stages:\n  - [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_pipeline(write_pipeline("- just\n- a list\n"))


def test_yaml_tags_that_build_objects_are_refused(write_pipeline):
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_pipeline(write_pipeline("stages: !!python/object/apply:os.system ['echo pwned']\n"))


def test_several_errors_reported_together(write_pipeline, tiny_doc):
    tiny_doc["seed"] = -1
    tiny_doc["stages"][1]["alpha"] = 2
    with pytest.raises(ConfigError, match=r"2 errors in .*pipe\.yaml:") as info:
        load_pipeline(write_pipeline(tiny_doc))
    seed, alpha = info.value.problems  # one line each, at their YAML path and line
    assert re.search(r"pipe\.yaml:\d+: seed:", seed) and re.search(r"pipe\.yaml:\d+: stages\[1\]\.alpha:", alpha)


def test_overrides_reach_stages_and_top_level(write_pipeline, tiny_doc):
    cfg = load_pipeline(
        write_pipeline(tiny_doc), ["distill.temperature=8", "seed=3", "data.image_size=12", "benchmark.enabled=false"]
    )
    assert cfg.stage("distill").temperature == 8.0
    assert cfg.seed == 3 and cfg.data.image_size == 12
    assert cfg.stage("benchmark").enabled is False


def test_override_to_unknown_target_fails():
    with pytest.raises(ConfigError, match="neither a top-level key nor a stage name"):
        apply_overrides({"stages": [{"stage": "teacher"}]}, ["nostage.x=1"])
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        apply_overrides({"stages": []}, ["novalue"])


def test_override_errors_name_the_override_not_a_yaml_line(write_pipeline, tiny_doc):
    path = write_pipeline(tiny_doc)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, ["teacher.epochs=1"])
    assert str(info.value) == (
        "--set teacher.epochs=1: unknown key 'epochs' in stage 'teacher'; did you mean 'teacher.train.epochs'?"
    )
    with pytest.raises(ConfigError, match=r"^--set distill\.temperature=hot: Input should be a valid number"):
        load_pipeline(path, ["distill.temperature=hot"])
    with pytest.raises(ConfigError, match=r"in 'data\.augment'; did you mean 'data\.augment\.max_shift'\?"):
        load_pipeline(path, ["data.augment.max_shif=3"])
    with pytest.raises(
        ConfigError, match=r"'teachr' is neither a top-level key nor a stage name; did you mean 'teacher'\?"
    ):
        load_pipeline(path, ["teachr.train.epochs=1"])
    with pytest.raises(ConfigError, match=r"pipe\.yaml:\d+: data: .*needs 'path' \(with --set data\.source=folder\)"):
        load_pipeline(path, ["data.source=folder"])


@pytest.mark.parametrize(
    ("where", "key", "meant"),
    [
        ((0,), "modle", "model"),  # a sibling
        ((0,), "epochs", "train.epochs"),  # one level down
        ((0, "train"), "epoch", "epochs"),
        ((1, "strategy"), "genrations", "generations"),  # inside a union member (strategy kind born_again)
    ],
)
def test_unknown_yaml_key_suggests_the_closest_allowed_one(tiny_doc, where, key, meant):
    tiny_doc["stages"][1]["strategy"] = {"kind": "born_again"}
    node = tiny_doc["stages"][where[0]]
    for part in where[1:]:
        node = node[part]
    node[key] = 1
    with pytest.raises(ConfigError, match=rf": unknown key; did you mean '{re.escape(meant)}'\?$"):
        validate_document(tiny_doc)


def test_duplicate_stage_names_need_a_name(tiny_doc):
    tiny_doc["stages"].append({"stage": "report"})
    with pytest.raises(ConfigError, match="names must be unique"):
        validate_document(tiny_doc)
    tiny_doc["stages"][-1]["name"] = "report2"
    assert validate_document(tiny_doc).stages[-1].id == "report2"


def test_model_spec_needs_exactly_one_source(tiny_doc):
    tiny_doc["stages"][1]["student"] = {"name": "tiny_cnn", "import": "x.y:Z"}
    with pytest.raises(ConfigError, match="exactly one of 'name'"):
        validate_document(tiny_doc)


class _Inner(Strict):
    a: int = 1
    late: float = added_later(0.0)


class _Outer(Strict):
    inner: _Inner = Field(default_factory=_Inner)
    items: list[_Inner] = Field(default_factory=lambda: [_Inner(), _Inner(late=2.0)])
    named: dict[str, _Inner] = Field(default_factory=lambda: {"x": _Inner()})
    late_list: list[int] = added_later(default_factory=list)
    enabled: bool = True


def test_key_dump_leaves_out_options_added_later_only_at_their_default():
    cfg = _Outer()
    assert key_dump(cfg, exclude={"enabled"}) == {
        "inner": {"a": 1},
        "items": [{"a": 1}, {"a": 1, "late": 2.0}],
        "named": {"x": {"a": 1}},
    }
    assert cfg.model_dump(mode="json")["inner"] == {"a": 1, "late": 0.0}  # manifests still show every option
    cfg.late_list, cfg.inner.late = [3], 0.5
    assert key_dump(cfg)["late_list"] == [3] and key_dump(cfg)["inner"] == {"a": 1, "late": 0.5}

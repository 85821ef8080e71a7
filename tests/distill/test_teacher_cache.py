"""The teacher cache replays exactly the logits the live teacher gives on the view the student trains on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _shared import tiny_pipeline_doc

from edgekd.core.config import AugmentConfig, DataConfig, TrainConfig
from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.data import build_splits, normalize
from edgekd.data.dataset import draw_augment, warp
from edgekd.distill.objective import DistillModule, Objective
from edgekd.distill.teacher_cache import TeacherCache, TeacherCacheConfig, cache_for, views_of
from edgekd.models import build_model
from edgekd.models.zoo import TinyCNN
from edgekd.training.loop import fit

AUG = AugmentConfig(max_shift=1, max_rotate_deg=10)


@pytest.fixture(scope="module")
def data():
    return build_splits(DataConfig(image_size=8))


def _teacher() -> torch.nn.Module:
    torch.manual_seed(1)
    t = TinyCNN(widths=(8, 8, 16)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them into the convolutions matters
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return t


def _batch(data, idx):
    return torch.from_numpy(data.arrays["train"][0][idx])


def test_cached_logits_are_the_live_teachers_on_the_view_the_student_sees(data):
    teacher = _teacher()
    cache = TeacherCache(TeacherCacheConfig(enabled=True, views=3), [teacher], data, AUG, seed=0)
    idx = np.array([5, 0, 17, 5, 900])
    raw = _batch(data, idx)
    view = cache.views(raw, idx, epoch=2, params=None)
    assert not torch.equal(view, raw)  # the student trains on an augmented view...
    x = normalize(view, data.mean, data.std)
    cached = cache.teachers()[0](x)
    with torch.no_grad():
        live = teacher(x)
    torch.testing.assert_close(cached, live, atol=1e-5, rtol=1e-5)  # ...and the teacher's logits are for that view
    assert cache.stats["hits"] == 1 and cache.stats["live_calls"] == 0
    assert cache.stats["teacher_forwards"] == 3 * len(data.arrays["train"][1])


def test_every_view_is_used_equally_and_the_draw_is_seeded(data):
    cfg = TeacherCacheConfig(enabled=True, views=3)
    a, b, c = (TeacherCache(cfg, [_teacher()], data, AUG, seed=s) for s in (0, 0, 1))
    n = len(data.arrays["train"][1])
    seen = np.stack([a.view_of(np.arange(n), e) for e in (1, 2, 3)], 1)
    assert (np.sort(seen, 1) == np.arange(3)).all()  # over 3 epochs each image trains on each of its 3 views once
    assert torch.equal(a.params, b.params) and (a.offset == b.offset).all()
    assert not torch.equal(a.params, c.params)


def _train(data, teachers, aug, views=None):
    torch.manual_seed(0)
    student = TinyCNN(widths=(4, 8, 8))
    sample = normalize(_batch(data, np.arange(2)), data.mean, data.std)
    module = DistillModule(student, Objective(2.0, 0.5, 0.0, []), teachers, None, sample)
    fit(module, data, TrainConfig(epochs=1, batch_size=128), aug, 0, module.loss, "t", views=views_of(module))
    return student.state_dict()


def test_without_augmentation_training_on_the_cache_matches_the_live_teacher(data):
    off = AugmentConfig(enabled=False)
    teacher = _teacher()
    live = _train(data, [teacher], off)
    cache = TeacherCache(TeacherCacheConfig(enabled=True), [teacher], data, off, seed=0)
    cached = _train(data, cache.teachers(), off)
    diff = max(float((live[k].float() - cached[k].float()).abs().max()) for k in live)
    assert diff < 1e-4  # exact up to float rounding: one logit vector per image, the one the live teacher computes
    steps = -(-len(data.arrays["train"][1]) // 128)
    assert cache.stats["hits"] == steps and cache.stats["live_calls"] == 1  # 1: the shape probe at build time


def test_unaugmented_cache_keeps_the_live_augmentation_for_the_student(data):
    teacher = _teacher()
    cache = TeacherCache(TeacherCacheConfig(enabled=True, unaugmented=True), [teacher], data, AUG, seed=0)
    idx = np.arange(8)
    raw = _batch(data, idx)
    params = draw_augment(8, raw.shape[2], torch.Generator().manual_seed(4), AUG.max_shift, AUG.max_rotate_deg)
    view = cache.views(raw, idx, 1, params)
    assert torch.equal(view, warp(raw, params))  # what the live run would have trained on
    cached = cache.teachers()[0](normalize(view, data.mean, data.std))
    with torch.no_grad():
        clean = teacher(normalize(raw, data.mean, data.std))
    torch.testing.assert_close(cached, clean, atol=1e-5, rtol=1e-5)  # but the teacher's logits are the clean image's


def test_calls_on_other_inputs_run_the_live_teacher(data):
    teacher = _teacher()
    cache = TeacherCache(TeacherCacheConfig(enabled=True, views=2), [teacher], data, AUG, seed=0)
    (cached_teacher,) = cache.teachers()
    idx = np.arange(6)
    x = normalize(cache.views(_batch(data, idx), idx, 1, None), data.mean, data.std)
    other = normalize(_batch(data, idx + 10), data.mean, data.std)
    with torch.no_grad():
        torch.testing.assert_close(cached_teacher(other), teacher(other))  # not the prepared batch: live
        cached_teacher(x)  # the prepared batch: served from the cache
        torch.testing.assert_close(cached_teacher(x), teacher(x), atol=1e-5, rtol=1e-5)  # a second call: live
    assert cache.stats == {**cache.stats, "hits": 1, "live_calls": 2}


def test_feature_terms_fall_back_to_the_live_teacher(data):
    notes: list[str] = []
    cfg = TeacherCacheConfig(enabled=True)
    assert cache_for(cfg, [_teacher()], data, AUG, 0, "cpu", ["features.0"], notes.append) is None
    assert "live teacher" in notes[0] and "features.0" in notes[0]
    assert cache_for(TeacherCacheConfig(), [_teacher()], data, AUG, 0, "cpu", [], notes.append) is None  # off


def test_bad_views_is_a_config_error():
    doc = tiny_pipeline_doc()
    doc["stages"][1]["teacher_cache"] = {"enabled": True, "views": 0}
    with pytest.raises(ConfigError, match=r"teacher_cache\.views"):
        validate_document(doc)


def test_distill_stage_with_cache_and_channels_last_saves_the_plain_student(tmp_path):
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    doc["stages"][1].update(baseline=False, teacher_cache={"enabled": True, "views": 2})
    doc["stages"][1]["train"]["channels_last"] = True
    res = run_pipeline(validate_document(doc), tmp_path)
    student = res.artifacts["student"]
    assert student.meta["teacher_cache"]["mode"] == "views" and student.meta["teacher_cache"]["hits"] > 0
    saved = torch.load(student.path, weights_only=True)
    fresh = build_model(student.meta["model"], 1, 10)
    assert set(saved) == set(fresh.state_dict())
    assert all(v.is_contiguous() for v in saved.values())  # trained channels-last, saved in the usual layout


def test_a_later_run_reuses_the_saved_logits(tmp_path):
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    doc["stages"][1].update(baseline=False, teacher_cache={"enabled": True, "views": 2})
    first = run_pipeline(validate_document(doc), tmp_path).artifacts["student"]
    doc["stages"][1]["temperature"] = 3.0  # another recipe, same teacher, data, views and seed
    second = run_pipeline(validate_document(doc), tmp_path).artifacts["student"]
    assert first.meta["teacher_cache"]["source"] == "computed" and first.meta["teacher_cache"]["teacher_forwards"] > 0
    assert second.meta["teacher_cache"]["source"] == "reused" and second.meta["teacher_cache"]["teacher_forwards"] == 0
    (saved,) = (tmp_path / ".cache").glob("teacher-logits-*.pt")
    saved.write_bytes(b"truncated")  # a damaged file is never trusted: computed again
    doc["stages"][1]["temperature"] = 4.0
    third = run_pipeline(validate_document(doc), tmp_path).artifacts["student"]
    assert third.meta["teacher_cache"]["source"] == "computed"

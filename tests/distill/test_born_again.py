"""Born-again self-distillation: each generation is taught by the frozen previous one; only the last is kept."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _shared import tiny_pipeline_doc
from strategy_helpers import STUDENT_SPEC, assert_one_line_error, edgekd, fresh_keys, tiny_data, tiny_env

from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.data import normalize
from edgekd.distill import STRATEGIES
from edgekd.models import build_model


def test_born_again_needs_no_teacher():
    assert not STRATEGIES.get("born_again").needs_teacher


def test_generation_loss_is_hinton_against_the_previous_generation(tmp_path):
    env = tiny_env(tmp_path, teachers=[], strategy={"kind": "born_again"}, temperature=3.0, alpha=0.25)
    torch.manual_seed(0)
    prev = build_model(STUDENT_SPEC, 1, 10).eval()
    for p in prev.parameters():
        p.requires_grad_(False)
    student = env.new_student()
    module = env.module(student, teachers=[prev])
    x = normalize(torch.from_numpy(tiny_data().arrays["train"][0][:16].copy()), env.data.mean, env.data.std)
    y = torch.from_numpy(tiny_data().arrays["train"][1][:16])
    logits = module(x)
    loss = module.loss(logits, y, x)
    # by hand: alpha * T^2 * KL(p_prev || p_student) at T + (1 - alpha) * CE
    t, a = 3.0, 0.25
    with torch.no_grad():
        p_t = torch.softmax(prev(x) / t, 1)
    log_p_s = torch.log_softmax(logits / t, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    assert torch.allclose(loss, a * t * t * kl + (1 - a) * F.cross_entropy(logits, y), atol=1e-6)
    # gradients reach the student only; the previous generation is frozen
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in prev.parameters())


def test_born_again_trains_generations_and_keeps_a_plain_student(tmp_path):
    env = tiny_env(tmp_path, teachers=[], strategy={"kind": "born_again", "generations": 2})
    res = STRATEGIES.get("born_again").run(env.cfg.strategy, env)
    gens = res.meta["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2]
    assert set(res.student.state_dict()) == fresh_keys()
    assert all(p.requires_grad for p in res.student.parameters())
    assert not res.extra_models
    # each generation resumes from its own checkpoint: a second call finds them finished and gives the same student
    again = STRATEGIES.get("born_again").run(env.cfg.strategy, env)
    for k, v in res.student.state_dict().items():
        assert torch.equal(v, again.student.state_dict()[k]), k


def test_born_again_pipeline_saves_only_the_student_and_gen0_is_the_baseline(tmp_path):
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    doc["stages"][1].update(strategy={"kind": "born_again", "generations": 1}, baseline=True)
    res = run_pipeline(validate_document(doc), tmp_path / "run")
    saved = torch.load(res.artifacts["student"].path, map_location="cpu", weights_only=True)
    assert set(saved) == fresh_keys()
    meta = res.artifacts["student"].meta
    assert meta["method"]["strategy"] == {"kind": "born_again", "generations": 1}
    assert meta["teachers"] == []
    # generation 0 is the scratch baseline: same initial weights, batches and loss
    gen0 = meta["generations"][0]["val_accuracy"]
    assert round(gen0, 5) == res.artifacts["baseline"].meta["history"][-1]["val_accuracy"]


def test_zero_generations_is_a_one_line_error(write_pipeline, tiny_doc):
    tiny_doc["stages"][1]["strategy"] = {"kind": "born_again", "generations": 0}
    assert_one_line_error(edgekd("validate", write_pipeline(tiny_doc)), r"generations: Input should be greater")

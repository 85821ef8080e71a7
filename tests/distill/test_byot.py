"""Be Your Own Teacher: auxiliary heads on shallow student layers, taught by the deepest output; stripped on save."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _shared import tiny_pipeline_doc
from strategy_helpers import STUDENT_SPEC, assert_one_line_error, edgekd, fresh_keys, tiny_env

from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.distill import STRATEGIES
from edgekd.distill.strategies.byot import BYOTConfig, SelfDistillModule
from edgekd.models import build_model

HEADS = ["features.0", "features.2"]  # tiny_cnn: conv-bn-relu blocks at 8x8 and 4x4


def _module(alpha=0.3, t=3.0, fw=0.03):
    torch.manual_seed(0)
    student = build_model(STUDENT_SPEC, 1, 10)
    scfg = BYOTConfig(heads=HEADS, head_width=4, feature_weight=fw)
    return student, SelfDistillModule(student, scfg, t, alpha, 0.0, torch.randn(2, 1, 8, 8))


def test_byot_loss_equals_hand_computation():
    _student, module = _module()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    logits = module(x)
    deep = module._deep.detach()
    feats = module._taps.out.copy()  # what the hooks captured, before loss() takes them
    loss = module.loss(logits, y, x)
    expected = F.cross_entropy(logits, y)
    for name, head in zip(HEADS, module.heads, strict=True):
        f, z = head(feats[name])
        p_t = torch.softmax(logits.detach() / 3.0, 1)
        kl = (p_t * (p_t.log() - torch.log_softmax(z / 3.0, 1))).sum(1).mean()
        expected = expected + 0.7 * F.cross_entropy(z, y) + 0.3 * 9.0 * kl + 0.03 * ((f - deep) ** 2).sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_gradients_reach_student_and_heads_but_the_deepest_output_is_not_pulled_to_the_heads():
    student, module = _module()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    logits = module(x)
    loss = module.loss(logits, y, x)
    ce = F.cross_entropy(logits, y)
    # the deepest classifier learns from the labels only: its output and feature are detached targets for the heads
    (g_total,) = torch.autograd.grad(loss, student.fc.weight, retain_graph=True)
    (g_ce,) = torch.autograd.grad(ce, student.fc.weight, retain_graph=True)
    assert torch.allclose(g_total, g_ce, atol=1e-7)
    # the shallow layers do learn through the heads
    (g_heads,) = torch.autograd.grad(loss - ce, student.features[0][0].weight, retain_graph=True)
    assert g_heads.abs().sum() > 0
    loss.backward()
    assert all(p.grad is not None for h in module.heads for p in h.parameters())


def test_byot_trains_and_returns_the_plain_student(tmp_path):
    env = tiny_env(tmp_path, teachers=[], strategy={"kind": "byot", "heads": HEADS, "head_width": 4})
    res = STRATEGIES.get("byot").run(env.cfg.strategy, env)
    assert set(res.student.state_dict()) == fresh_keys()
    assert set(res.meta["head_val_accuracy"]) == set(HEADS)
    assert not res.student._forward_hooks and not res.student.fc._forward_pre_hooks
    assert all(not m._forward_hooks for m in res.student.modules())


def test_byot_pipeline_saves_only_the_student(tmp_path):
    doc = tiny_pipeline_doc()
    doc["stages"] = doc["stages"][:2]
    doc["stages"][1].update(strategy={"kind": "byot", "heads": HEADS, "head_width": 4}, baseline=False)
    res = run_pipeline(validate_document(doc), tmp_path / "run")
    saved = torch.load(res.artifacts["student"].path, map_location="cpu", weights_only=True)
    assert set(saved) == fresh_keys()


def test_unknown_head_layer_lists_close_matches(write_pipeline, tiny_doc):
    tiny_doc["stages"][1]["strategy"] = {"kind": "byot", "heads": ["feature.2"]}
    assert_one_line_error(
        edgekd("validate", write_pipeline(tiny_doc)), r"the student has no layer 'feature.2'; did you mean 'features.2'"
    )

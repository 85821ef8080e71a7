"""Heterogeneous distillation: CNN -> ViT and ViT -> CNN through OFA logit-space heads and token <-> map adapters."""

from __future__ import annotations

import math

import pytest
import torch
from _shared import tiny_pipeline_doc
from term_helpers import (
    TINY_STUDENT,
    TINY_VIT,
    assert_gradients,
    frozen,
    make_module,
    state_keys_unchanged,
    train_one_epoch,
)

from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.distill.heterogeneous import ofa_loss


def test_ofa_loss_equals_hand_computation():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.5]])
    y = torch.tensor([1])
    eps = 1.5
    e = [math.exp(v) for v in t[0].tolist()]
    p_t = [v / sum(e) for v in e]
    log_q = [v - math.log(sum(math.exp(u) for u in s[0].tolist())) for v in s[0].tolist()]
    coef = [p_t[0] ** eps, (p_t[1] + 1) ** eps - 1, p_t[2] ** eps]
    want = -sum(c * lq for c, lq in zip(coef, log_q, strict=True))
    assert float(ofa_loss(s, t, y, eps)) == pytest.approx(want, rel=1e-6)
    # eps = 1: cross-entropy with the teacher's distribution (KD up to the teacher's entropy)
    ce = -sum(p * lq for p, lq in zip(p_t, log_q, strict=True))
    assert float(ofa_loss(s, t, y, 1.0)) == pytest.approx(ce, rel=1e-6)


def test_cnn_teacher_teaches_a_vit_student():
    terms = [
        # 16 tokens of dim 8 -> a 4x4 map, 1x1 conv to 16 channels, pooled to the teacher's 2x2
        {"kind": "feature", "pairs": [{"student": "blocks.0", "teacher": "layers.1"}]},
        {"kind": "ofa", "student_layers": ["blocks.0", "blocks.1"], "hidden": 8},
    ]
    module = make_module(terms, student_spec=TINY_VIT)
    assert isinstance(module.objective.terms[0].adapters[0], torch.nn.Conv2d)
    assert_gradients(module)
    assert train_one_epoch(module) >= 0.0
    assert module.objective.last_parts["1:ofa"] > 0
    state_keys_unchanged(module, TINY_VIT)


def test_vit_teacher_teaches_a_cnn_student():
    terms = [
        {"kind": "feature", "pairs": [{"student": "features.2", "teacher": "blocks.1"}]},  # map -> teacher tokens
        {"kind": "ofa", "student_layers": ["features.2"], "hidden": 8, "eps": 1.2},
    ]
    module = make_module(terms, teachers=[frozen({**TINY_VIT, "kwargs": {**TINY_VIT["kwargs"], "dim": 16}})])
    assert_gradients(module)
    assert train_one_epoch(module) >= 0.0
    state_keys_unchanged(module, TINY_STUDENT)


def test_vit_to_vit_attention_maps():
    teacher = frozen({**TINY_VIT, "kwargs": {**TINY_VIT["kwargs"], "dim": 16, "heads": 4}})
    terms = [{"kind": "attention", "maps": "transformer",
              "pairs": [{"student": "blocks.1.attn.probs", "teacher": "blocks.1.attn.probs"}]}]  # fmt: skip
    module = make_module(terms, student_spec=TINY_VIT, teachers=[teacher])
    assert_gradients(module)
    assert train_one_epoch(module) >= 0.0
    assert module.objective.last_parts["0:attention"] > 0


def test_heterogeneous_pipeline_validates_and_reports_bad_layers():
    doc = tiny_pipeline_doc()
    distill = doc["stages"][1]
    distill["student"] = TINY_VIT
    distill["losses"] = [
        {"kind": "feature", "pairs": [{"student": "blocks.0", "teacher": "layers.0"}]},
        {"kind": "ofa", "student_layers": ["blocks.1"]},
    ]
    validate_document(doc)
    distill["losses"][1]["student_layers"] = ["block.1"]
    with pytest.raises(ConfigError, match=r"student has no layer 'block.1'; did you mean 'blocks.1'"):
        validate_document(doc)

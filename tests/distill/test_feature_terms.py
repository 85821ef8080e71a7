"""Feature-level terms: FitNets hints, attention transfer (spatial and Transformer), FSP; and their bad input."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from _shared import tiny_pipeline_doc
from term_helpers import (
    TINY_STUDENT,
    assert_gradients,
    assert_one_line_error,
    edgekd_cli,
    make_module,
    state_keys_unchanged,
    train_one_epoch,
)

from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.distill.attention import AttentionConfig, AttentionTerm
from edgekd.distill.base import Batch
from edgekd.distill.features import FeatureConfig, FeatureTerm, to_map
from edgekd.distill.structural import FSPConfig, FSPTerm


def _batch(s: dict, t: dict, weight=None) -> Batch:
    return Batch(x=torch.zeros(1), y=torch.zeros(1), student_logits=torch.zeros(1), student_feats=s, teacher_feats=t,
                 sample_weight=weight)  # fmt: skip


def _shapes(d: dict) -> dict:
    return {k: v.shape for k, v in d.items()}


def test_feature_hint_equals_hand_computation_with_adapter_and_pooling():
    torch.manual_seed(0)
    s = torch.randn(2, 2, 2, 2)  # student: 2 channels at 2x2
    t = torch.randn(2, 3, 4, 4)  # teacher: 3 channels at 4x4 -> pooled to 2x2
    term = FeatureTerm(FeatureConfig(pairs=[{"student": "a", "teacher": "b"}]))
    term.build({"a": s.shape}, {"b": t.shape})
    w = torch.tensor([[1.0, 2.0], [0.0, -1.0], [0.5, 0.5]])
    term.adapters[0].weight.data = w[:, :, None, None]
    got = term(_batch({"a": s}, {"b": t}))
    total = 0.0
    for n in range(2):
        acc = 0.0
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    pooled = sum(float(t[n, c, 2 * i + di, 2 * j + dj]) for di in (0, 1) for dj in (0, 1)) / 4
                    adapted = sum(float(w[c, k]) * float(s[n, k, i, j]) for k in range(2))
                    acc += (adapted - pooled) ** 2
        total += acc / 12
    assert math.isclose(float(got), total / 2, rel_tol=1e-5)
    # per-sample weights (purification): only sample 1 counts
    only1 = term(_batch({"a": s}, {"b": t}, torch.tensor([0.0, 1.0])))
    assert float(only1) == pytest.approx(float(term(_batch({"a": s[1:]}, {"b": t[1:]}))), rel=1e-6)


def test_tokens_become_a_map_with_the_class_token_dropped():
    tokens = torch.arange(5 * 3, dtype=torch.float32).reshape(1, 5, 3)  # class token + 2x2 patches, dim 3
    m = to_map(tokens)
    assert m.shape == (1, 3, 2, 2)
    assert m[0, :, 0, 1].tolist() == tokens[0, 2].tolist()  # patch 1 (row 0, col 1) is token 2
    assert to_map(tokens[:, 1:]).equal(m)  # without a class token: the same grid


def test_spatial_attention_transfer_equals_hand_computation():
    s = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[1.0, 0.0], [2.0, 1.0]]]])  # (1, 2, 2, 2)
    t = torch.tensor([[[[3.0, 0.0], [0.0, 1.0]]]])  # (1, 1, 2, 2): different channel count is fine
    term = AttentionTerm(AttentionConfig(pairs=[{"student": "a", "teacher": "b"}]))
    term.build({"a": s.shape}, {"b": t.shape})
    a_s = [(1 + 1) / 2, (4 + 0) / 2, (0 + 4) / 2, (1 + 1) / 2]
    a_t = [9.0, 0.0, 0.0, 1.0]
    ns, nt = math.sqrt(sum(v * v for v in a_s)), math.sqrt(sum(v * v for v in a_t))
    want = sum((a / ns - b / nt) ** 2 for a, b in zip(a_s, a_t, strict=True)) / 4
    assert float(term(_batch({"a": s}, {"b": t}))) == pytest.approx(want, rel=1e-6)


def test_transformer_attention_transfer_is_kl_of_head_averaged_rows():
    torch.manual_seed(0)
    s = torch.softmax(torch.randn(1, 2, 3, 3), -1)  # 2 heads
    t = torch.softmax(torch.randn(1, 4, 3, 3), -1)  # 4 heads: head counts may differ
    term = AttentionTerm(AttentionConfig(maps="transformer", pairs=[{"student": "a", "teacher": "b"}]))
    term.build({"a": s.shape}, {"b": t.shape})
    ms, mt = s[0].mean(0), t[0].mean(0)
    want = sum(float(mt[r, c]) * math.log(float(mt[r, c]) / float(ms[r, c])) for r in range(3) for c in range(3)) / 3
    assert float(term(_batch({"a": s}, {"b": t}))) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ConfigError, match="not attention probabilities"):
        term.build({"a": torch.Size([1, 4, 3, 2])}, {"b": t.shape})


def test_fsp_equals_hand_computation():
    torch.manual_seed(0)
    s1, s2 = torch.randn(1, 2, 2, 2), torch.randn(1, 2, 4, 4)  # second layer pooled to 2x2
    t1, t2 = torch.randn(1, 2, 2, 2), torch.randn(1, 2, 2, 2)
    term = FSPTerm(FSPConfig(pairs=[{"student": ["s1", "s2"], "teacher": ["t1", "t2"]}]))
    term.build({"s1": s1.shape, "s2": s2.shape}, {"t1": t1.shape, "t2": t2.shape})
    s2p = torch.nn.functional.avg_pool2d(s2, 2)

    def gram(a, b):
        return [[sum(float(a[0, i].flatten()[k] * b[0, j].flatten()[k]) for k in range(4)) / 4 for j in range(2)]
                for i in range(2)]  # fmt: skip

    gs, gt = gram(s1, s2p), gram(t1, t2)
    want = sum((gs[i][j] - gt[i][j]) ** 2 for i in range(2) for j in range(2)) / 4
    got = term(_batch({"s1": s1, "s2": s2}, {"t1": t1, "t2": t2}))
    assert float(got) == pytest.approx(want, rel=1e-5)


# tiny_cnn [4, 8, 8] on 8x8: features.0 (4ch 8x8), features.2 (8ch 4x4), features.4 (8ch 2x2)
# tiny resnet [8, 16, 32]: stem / layers.0 (8ch 4x4), layers.1 (16ch 2x2), layers.2 (32ch 1x1)
TERMS = {
    "feature": {"kind": "feature", "pairs": [{"student": "features.0", "teacher": "layers.0"},
                                             {"student": "features.4", "teacher": "layers.1"}]},
    "attention": {"kind": "attention", "weight": 1000, "pairs": [{"student": "features.2", "teacher": "layers.0"},
                                                                  {"student": "features.4", "teacher": "layers.1"}]},
    "fsp": {"kind": "fsp", "pairs": [{"student": ["features.0", "features.2"], "teacher": ["stem", "layers.0"]},
                                     {"student": ["features.2", "features.4"], "teacher": ["layers.0", "layers.1"]}]},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(TERMS))
def test_term_trains_student_and_adapters_not_teacher(kind):
    module = make_module([TERMS[kind]])
    assert_gradients(module)
    assert 0.0 <= train_one_epoch(module) <= 1.0
    assert module.objective.last_parts[f"0:{kind}"] > 0
    state_keys_unchanged(module, TINY_STUDENT)


def _doc_with(losses: list[dict]) -> dict:
    doc = tiny_pipeline_doc()
    doc["stages"][1]["losses"] = losses
    return doc


def test_bad_layer_name_is_one_line_at_validate_time(tmp_path):
    bad = {"kind": "feature", "pairs": [{"student": "feature.2", "teacher": "layers.0"}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_doc_with([bad]), sort_keys=False))
    assert_one_line_error(edgekd_cli("validate", path), r"student has no layer 'feature.2'; did you mean 'features.2'")


def test_incompatible_shapes_without_adapter_is_one_line_at_validate_time(tmp_path):
    bad = {"kind": "feature", "adapter": False, "pairs": [{"student": "features.0", "teacher": "layers.0"}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_doc_with([bad]), sort_keys=False))
    assert_one_line_error(edgekd_cli("validate", path), r"student has 4 channels, teacher 8, and adapters are off")


@pytest.mark.parametrize(
    ("term", "pattern"),
    [
        ({"kind": "attention", "pairs": [{"student": "fetures.4", "teacher": "layers.1"}]}, r"did you mean"),
        ({"kind": "fsp", "pairs": [{"student": ["features.0", "features.2"], "teacher": ["stem", "layer.0"]}]},
         r"teacher 'teacher' has no layer 'layer.0'"),
        ({"kind": "fsp", "adapter": False,
          "pairs": [{"student": ["features.0", "features.2"], "teacher": ["stem", "layers.0"]}]}, r"adapters are off"),
        ({"kind": "attention", "maps": "transformer", "pairs": [{"student": "features.2", "teacher": "layers.0"}]},
         r"layer 'features.2' does not output attention probabilities"),
    ],
)  # fmt: skip
def test_other_bad_terms_fail_validation(term, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_document(_doc_with([term]))


def test_good_terms_validate():
    validate_document(_doc_with(list(TERMS.values())))

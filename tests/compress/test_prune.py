"""Structured pruning: smaller dense models that rebuild from their spec; errors that name the stage, key and layer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgekd.compress import pruning
from edgekd.compress.structure import apply_structure, check_rebuild, describe
from edgekd.core.errors import ConfigError, ModelError
from edgekd.core.loader import validate_document
from edgekd.models import build_model
from edgekd.models.stats import count_macs, count_params

SPEC = {"name": "mobilenetv2_student", "kwargs": {"width": 8, "cfg": [[1, 8, 1, 1], [2, 16, 2, 2]], "last": 32}}
SHAPE = (1, 1, 16, 16)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(SPEC, 1, 10).eval()


def _example() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))


def _prune(model, **kw) -> pruning.ChannelPruner:
    steps = kw.pop("steps", 1)
    ignore = kw.pop("ignore", [])
    settings = pruning.PruneSettings(**{"importance": "l2", "round_to": 4, "steps": steps, **kw})
    pruner = pruning.ChannelPruner(model, _example(), settings, ignore)
    for k in range(1, steps + 1):
        pruner.step(k)
    return pruner


def test_pruning_removes_channels_and_macs_keeps_ignored_layers_and_the_classifier():
    model = _model()
    before_ch, before_macs = pruning.channel_counts(model), count_macs(model, SHAPE)
    _prune(model, ratio=0.5, ignore=["stem.0"])
    after = pruning.channel_counts(model)
    assert count_macs(model, SHAPE) < 0.6 * before_macs
    assert after["stem.0"] == before_ch["stem.0"]  # ignored: outputs kept
    assert after["fc"] == 10  # the classifier's outputs are the classes
    shrunk = [n for n in after if after[n] < before_ch[n]]
    assert len(shrunk) >= 5
    assert all(after[n] % 4 == 0 for n in shrunk), after  # round_to
    assert model(_example()).shape == (1, 10)


def test_macs_target_is_reached_in_steps():
    model = _model()
    base = count_macs(model, SHAPE)
    pruner = pruning.ChannelPruner(
        model, _example(), pruning.PruneSettings("l1", macs_reduction=0.4, round_to=4, steps=2), []
    )
    first = pruner.step(1)["macs"]
    second = pruner.step(2)["macs"]
    assert base * 0.8 >= first >= second
    assert second <= base * 0.6


@pytest.mark.parametrize("importance", ["taylor", "bn_scale"])
def test_data_driven_criteria_prune(importance):
    model = _model()
    x, y = torch.randn(16, *SHAPE[1:]), torch.randint(0, 10, (16,))

    def gradients():
        nn.functional.cross_entropy(model(x), y).backward()

    settings = pruning.PruneSettings(importance, ratio=0.5, round_to=4, steps=1)
    pruner = pruning.ChannelPruner(model, _example(), settings, [])
    before = count_params(model)
    pruner.step(1, gradients if importance == "taylor" else None)
    assert count_params(model) < before


def test_pruned_model_rebuilds_from_spec_and_structure():
    model = _model()
    _prune(model, ratio=0.5)
    structure = describe(model, _model())
    assert structure and all(v["type"] in {"Conv2d", "BatchNorm2d", "Linear"} for v in structure.values())
    check_rebuild(model, _model(), structure)
    rebuilt = apply_structure(_model(), structure)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(3, *SHAPE[1:])
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


def test_unknown_layer_to_ignore_lists_close_matches():
    with pytest.raises(
        ConfigError, match=r"ignore_layers: no layer 'stem\.9' in MobileNetV2Student; did you mean 'stem\."
    ):
        _prune(_model(), ratio=0.5, ignore=["stem.9"])


class _Detached(nn.Module):
    def __init__(self, **_):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(8, 10)

    def forward(self, x):
        y = self.c2(self.c1(x)).mean((2, 3))
        return self.fc(torch.from_numpy(y.detach().numpy()))  # autograd cannot follow this


class _HardCoded(nn.Module):
    def __init__(self, **_):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(32, 10)

    def forward(self, x):
        y = self.c2(self.c1(x))
        y = y.reshape(y.shape[0], 8, -1).mean(-1)  # 8 channels written into forward
        return self.fc(torch.cat([y, y, y, y], 1))


def test_untraceable_model_names_the_layer():
    with pytest.raises(ModelError, match=r"model: torch-pruning cannot trace layer 'c1' \(Conv2d\)"):
        _prune(_Detached(), ratio=0.5)


def test_forward_that_breaks_after_pruning_names_the_layer():
    with pytest.raises(ModelError, match=r"no longer runs at layer 'fc'"):
        _prune(_HardCoded(), ratio=0.5)


def test_unstructured_pruning_zeroes_weights_but_keeps_shapes_and_macs():
    model = _model()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    params = pruning.mask_unstructured(model, 0.6, ["fc"])
    sparsity = pruning.remove_masks(params)
    assert 0.59 <= sparsity <= 0.61
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert count_macs(model, SHAPE) == count_macs(_model(), SHAPE)  # same dense work


def _doc(prune: dict) -> dict:
    return {
        "name": "t",
        "data": {"source": "digits", "image_size": 16},
        "stages": [
            {"stage": "teacher", "model": {"name": "tiny_cnn", "kwargs": {"widths": [8, 8, 8]}}},
            {"stage": "distill", "student": copy.deepcopy(SPEC)},
            {"stage": "prune", **prune},
        ],
    }


@pytest.mark.parametrize(
    ("prune", "message"),
    [
        ({"ratio": 1.5}, r"stages\[2\]\.ratio: stage 'prune': ratio must be strictly between 0 and 1 \(got 1\.5\)"),
        ({"macs_reduction": 0.0}, r"stage 'prune': macs_reduction must be strictly between 0 and 1"),
        ({"ratio": 0.3, "macs_reduction": 0.3}, r"give either ratio or macs_reduction"),
        ({"ignore_layers": ["features.7"]}, r"stages\[2\] \(prune\): ignore_layers: no layer 'features\.7'.*mean"),
        ({"macs_reduction": 0.95, "max_layer_ratio": 0.5}, r"stages\[2\] \(prune\): macs_reduction: cannot remove 95%"),
    ],
)
def test_validate_reports_bad_prune_config_in_one_line(prune, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate_document(_doc(prune), where="pipe.yaml")
    assert "\n" not in str(err.value)


def test_validate_accepts_a_good_prune_config():
    cfg = validate_document(_doc({"macs_reduction": 0.4, "steps": 2, "ignore_layers": ["stem.0"]}), where="p.yaml")
    assert cfg.stages[2].output == "student_pruned"


def test_validate_names_a_layer_the_pruner_cannot_trace():
    doc = _doc({"ratio": 0.5})
    doc["stages"][1]["student"] = {"import": "test_prune:_Detached"}
    with pytest.raises(ConfigError, match=r"stages\[2\] \(prune\): model: torch-pruning cannot trace layer 'c1'"):
        validate_document(doc, where="p.yaml")

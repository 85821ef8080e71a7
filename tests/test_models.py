import sys
import textwrap

import pytest
import torch

from edgekd.core.errors import ConfigError, ModelError
from edgekd.models import MODELS, build_model
from edgekd.models.checkpoint import load_into, load_state_dict, save_state_dict
from edgekd.models.stats import count_macs, count_params


@pytest.mark.parametrize("name", MODELS.names())
def test_every_zoo_model_builds_and_runs(name):
    m = build_model({"name": name}, in_channels=3, num_classes=7).eval()
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_default_student_is_at_most_one_eighth_of_the_teacher():
    t = build_model({"name": "resnet_teacher"}, 1, 10)
    s = build_model({"name": "mobilenetv2_student"}, 1, 10)
    assert count_params(t) >= 8 * count_params(s)
    assert count_macs(t, (1, 1, 32, 32)) > count_macs(s, (1, 1, 32, 32)) > 0


def test_macs_of_a_conv_net_match_hand_count():
    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise: 9 MACs per output
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 25, 3),
    ).train()
    hand = 4 * 25 * (2 * 9) + 4 * 25 * 9 + 3 * 100  # norms, activations and biases count nothing
    assert count_macs(m, (1, 2, 5, 5)) == hand
    assert count_macs(m, (8, 2, 5, 5)) == hand  # always batch 1
    assert m.training  # the count runs in eval mode and gives the mode back


def test_macs_of_vit_tiny_count_its_attention_matmuls():
    from torch.utils.flop_counter import FlopCounterMode

    m = build_model({"name": "vit_tiny"}, 1, 10).eval()  # patch 4, dim 64, depth 4, 4 heads, mlp_ratio 2
    tokens, dim, depth, hidden = (32 // 4) ** 2, 64, 4, 128
    convs = dim * tokens * 16 + dim * tokens * 9  # patch embedding (1 -> 64, 4x4) + depthwise 3x3 position conv
    linears = depth * tokens * (dim * 3 * dim + dim * dim + 2 * dim * hidden) + 10 * dim  # qkv, proj, mlp; head
    attention = depth * 2 * tokens * tokens * dim  # q @ k^T and probs @ v, over all heads
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(torch.zeros(1, 1, 32, 32))
    macs = count_macs(m, (1, 1, 32, 32))
    assert macs == counter.get_total_flops() // 2 == convs + linears + attention
    assert macs > convs + linears  # what hooks on Conv2d/Linear alone counted (8,491,648: 20 % short)


def test_user_model_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def __init__(self, in_channels, num_classes, hidden=5):
                super().__init__()
                self.fc = torch.nn.Linear(in_channels * 64, num_classes)
                self.hidden = hidden
            def forward(self, x):
                return self.fc(x.flatten(1))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build_model({"import": "mymodels:Net", "kwargs": {"hidden": 9}}, 1, 4)
    assert m.hidden == 9 and m(torch.zeros(1, 1, 8, 8)).shape == (1, 4)
    with pytest.raises(ConfigError, match="cannot import module 'nomodule'"):
        build_model({"import": "nomodule:Net"}, 1, 4)
    with pytest.raises(ConfigError, match="has no attribute 'Nope'"):
        build_model({"import": "mymodels:Nope"}, 1, 4)
    with pytest.raises(ModelError, match="cannot build model 'tiny_cnn'"):
        build_model({"name": "tiny_cnn", "kwargs": {"bogus": 1}}, 1, 4)
    sys.modules.pop("mymodels", None)


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    path = save_state_dict(build_model({"name": "tiny_cnn"}, 1, 10), tmp_path / "tiny.pt")
    with pytest.raises(ModelError, match=r"does not fit the ResNetTeacher architecture"):
        load_into(build_model({"name": "resnet_teacher"}, 1, 10), path)
    with pytest.raises(ModelError, match="shape mismatches"):
        load_into(build_model({"name": "tiny_cnn"}, 1, 3), path)
    load_into(build_model({"name": "tiny_cnn"}, 1, 10), path)


def test_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ModelError, match="is not a loadable weights-only checkpoint"):
        load_state_dict(tmp_path / "junk.pt")


class _Evil:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['EDGEKD_PWNED'], 'w').write('pwned')",))


def test_malicious_pickle_checkpoint_does_not_execute(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EDGEKD_PWNED", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(ModelError, match="not a loadable weights-only checkpoint"):
        load_state_dict(path)
    assert not marker.exists()
    with open(path, "rb") as fh:  # proof the file really carries code: unpickling it unsafely would run it
        assert b"exec" in fh.read()

"""Checkpoint files as users have them, each made here for real: a plain state_dict, safetensors, timm's train.py
``.pth.tar`` (with its argparse ``args``), DDP's ``module.`` prefix, a Lightning ``.ckpt`` (``model.`` prefix and a
hyper-parameter container of Lightning's own class), torch.compile's ``_orig_mod.``, and a whole pickled model,
which is refused with the fix. Nothing in a file runs: containers are read as inert records."""

from __future__ import annotations

import argparse
import sys
import types

import pytest
import torch

from edgekd.core.errors import ModelError
from edgekd.models import build_model
from edgekd.models.checkpoint import load_into, read_checkpoint

SPEC = {"name": "mobilenetv2_student"}


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(SPEC, 3, 10).eval()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _load(path) -> tuple[torch.nn.Module, list[str]]:
    said: list[str] = []
    return load_into(_model(seed=1), path, log=said.append), said


def test_plain_state_dict(tmp_path):
    src = _model()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    got, said = _load(tmp_path / "w.pth")
    assert _same(got, src) and said == [f"checkpoint '{tmp_path / 'w.pth'}': state_dict"]


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    src = _model()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    got, said = _load(tmp_path / "w.safetensors")
    assert _same(got, src) and said[0].endswith(": safetensors")


def test_timm_train_py_checkpoint_with_args_and_ema(tmp_path):
    src, ema = _model(), _model(seed=2)
    opt = torch.optim.SGD(src.parameters(), lr=0.1, momentum=0.9)
    src(torch.zeros(2, 3, 32, 32)).sum().backward()
    opt.step()
    torch.save(
        {
            "epoch": 7,
            "arch": "mobilenetv3_small_100",
            "state_dict": src.state_dict(),
            "optimizer": opt.state_dict(),
            "version": 2,
            "args": argparse.Namespace(model="mobilenetv3_small_100", lr=0.1, epochs=100),
            "metric": 71.2,
            "state_dict_ema": ema.state_dict(),
        },
        tmp_path / "model_best.pth.tar",
    )
    got, said = _load(tmp_path / "model_best.pth.tar")
    assert _same(got, src) and "'state_dict' of a timm train.py checkpoint" in said[0]
    state, how = read_checkpoint(tmp_path / "model_best.pth.tar", prefer_ema=True)
    assert how.startswith("'state_dict_ema'") and torch.equal(state["stem.0.weight"], ema.state_dict()["stem.0.weight"])


def test_ddp_prefix_is_stripped_and_said(tmp_path):
    src = _model()
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "ddp.pt")
    got, said = _load(tmp_path / "ddp.pt")
    assert _same(got, src) and f"stripped 'module.' from {len(src.state_dict())} keys" in said[0]


def test_lightning_checkpoint(tmp_path, monkeypatch):
    """A LightningModule holding the net as ``self.model`` and a loss with weights of its own; the hyper-parameters
    are Lightning's AttributeDict, a class this environment does not even have (made here under its real name)."""
    mod = types.ModuleType("lightning.fabric.utilities.data")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = mod.__name__, "AttributeDict"
    mod.AttributeDict = AttributeDict
    for name in ("lightning", "lightning.fabric", "lightning.fabric.utilities", mod.__name__):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    src = _model()
    state = {f"model.{k}": v for k, v in src.state_dict().items()}
    state["criterion.weight"] = torch.ones(10)
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": state,
            "hyper_parameters": AttributeDict(lr=1e-3, backbone="mobilenet"),
            "optimizer_states": [],
        },
        tmp_path / "epoch=3.ckpt",
    )
    monkeypatch.delitem(sys.modules, mod.__name__)  # the reader has no Lightning: the container stays inert
    got, said = _load(tmp_path / "epoch=3.ckpt")
    assert _same(got, src)
    assert "'state_dict' of a Lightning checkpoint" in said[0]
    assert "stripped 'model.' from" in said[0] and "ignored 1 keys outside it" in said[0]


def test_torch_compile_prefix(tmp_path):
    src = _model()
    torch.save({f"_orig_mod.{k}": v for k, v in src.state_dict().items()}, tmp_path / "c.pt")
    got, said = _load(tmp_path / "c.pt")
    assert _same(got, src) and "stripped '_orig_mod.'" in said[0]


def test_whole_pickled_model_is_refused_with_the_fix(tmp_path):
    torch.save(_model(), tmp_path / "whole.pt")
    with pytest.raises(ModelError, match=r"whole pickled model .*torch\.save\(model\.state_dict\(\), 'weights\.pt'\)"):
        read_checkpoint(tmp_path / "whole.pt")


def test_a_function_global_is_refused_unread(tmp_path):
    """A container is a class; a checkpoint that names a function (here ``os.getcwd``) is refused before reading."""
    import os

    torch.save({"state_dict": _model().state_dict(), "hook": os.getcwd}, tmp_path / "f.pt")
    with pytest.raises(ModelError, match=r"it names (posix|os)\.getcwd"):
        read_checkpoint(tmp_path / "f.pt")


def test_other_architecture_still_one_line_after_prefix_matching(tmp_path):
    torch.save({f"module.{k}": v for k, v in build_model({"name": "resnet_teacher"}, 3, 10).state_dict().items()},
               tmp_path / "other.pt")  # fmt: skip
    with pytest.raises(ModelError, match=r"does not fit the .* architecture"):
        _load(tmp_path / "other.pt")

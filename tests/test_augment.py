"""Augmentation for photos: a random-resized crop and left-right flips in the same affine warp as the shift and
rotation; off (the default), the random stream and the images are what they always were."""

from __future__ import annotations

import pytest
import torch

from edgekd.core.config import AugmentConfig, key_dump
from edgekd.core.errors import ConfigError
from edgekd.data.dataset import draw_augment, warp


def _draw(**kw):
    return draw_augment(64, 32, torch.Generator().manual_seed(0), 2.0, 10.0, **kw)


def test_off_draws_exactly_what_it_always_drew():
    gen = torch.Generator().manual_seed(0)
    old_ang = (torch.rand(64, generator=gen) * 2 - 1) * (10.0 * torch.pi / 180)
    old_shift = (torch.rand(64, 2, generator=gen) * 2 - 1) * (2 * 2.0 / 32)
    assert torch.equal(_draw(), torch.cat([old_ang[:, None], old_shift], 1))
    assert torch.equal(_draw(crop_scale=(1.0, 1.0), hflip=False), _draw())
    assert "crop_scale" not in key_dump(AugmentConfig()) and "hflip" not in key_dump(AugmentConfig())


def test_crop_stays_inside_with_its_area_and_aspect():
    p = _draw(crop_scale=(0.25, 0.5))
    sx, sy, c = p[:, 3].abs(), p[:, 4], p[:, 5:7]
    area = sx * sy
    assert p.shape == (64, 7) and bool((area >= 0.25 - 1e-6).all()) and bool((area <= 0.5 + 1e-6).all())
    assert bool(((sx / sy) >= 0.75 - 1e-6).all()) and bool(((sx / sy) <= 4 / 3 + 1e-6).all())
    assert bool((c.abs() + torch.stack([sx, sy], 1) <= 1 + 1e-6).all())
    assert bool((p[:, 3] > 0).all())  # no flips asked for


def test_flip_mirrors_exactly_and_half_the_time():
    p = _draw(hflip=True)
    flips = p[:, 3] < 0
    assert 16 < int(flips.sum()) < 48
    x = torch.rand(1, 3, 8, 8)
    mirror = torch.tensor([[0.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0]])  # no rotation, shift or crop: only the mirror
    assert torch.allclose(warp(x, mirror), x.flip(-1), atol=1e-6)
    ident = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    assert torch.allclose(warp(x, ident), x, atol=1e-6)


def test_a_centre_crop_of_half_the_side_zooms_into_the_middle():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 2:6, 2:6] = 1.0  # the middle quarter is white
    half = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0]])
    out = warp(x, half)  # the crop fills the image: white inside, only its edge blends (bilinear, half a pixel)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.ones(1, 1, 6, 6), atol=1e-6) and float(out.min()) > 0.5


def test_bad_crop_scale_is_refused():
    from edgekd.core.loader import validate_document

    doc = {"data": {"augment": {"crop_scale": [0.8, 0.3]}}, "stages": [{"stage": "teacher"}]}
    with pytest.raises(ConfigError, match=r"crop_scale must be \(low, high\)"):
        validate_document(doc)

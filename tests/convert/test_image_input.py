"""The app-facing input put in front of a model before litert-torch converts it: NHWC, RGB made grey inside."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgekd.core.errors import ModelError  # noqa: E402
from edgekd.formats.tflite.image_input import GREY_WEIGHTS, app_facing, file_input  # noqa: E402

SHAPE = (1, 1, 6, 5)


class Grey(torch.nn.Module):
    """A grey model whose input goes straight into one conv (foldable) or, with ``skip``, also elsewhere (not)."""

    def __init__(self, skip: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)
        self.skip = skip

    def forward(self, x):
        y = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        return y + x.mean((1, 2, 3))[:, None] if self.skip else y


def _grey_and_rgb(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.random.default_rng(0).standard_normal((n, 3, *SHAPE[2:])).astype(np.float32)
    grey = np.tensordot(np.float32(GREY_WEIGHTS), rgb, axes=([0], [1]))[:, None]
    return grey, rgb


@pytest.mark.parametrize(("skip", "how"), [(False, "folded into the first convolution"), (True, "1x1 conv")])
def test_rgb_nhwc_input_computes_the_grey_models_answer(skip, how):
    torch.manual_seed(0)
    model = Grey(skip).eval()
    wrapped, shape, _, info = app_facing(model, SHAPE, None, nhwc=True, grey_from_rgb=True)
    assert shape == (1, 6, 5, 3) and info == {"grey_from_rgb": True, "grey_conversion": how}
    grey, rgb = _grey_and_rgb()
    with torch.no_grad():
        want = model(torch.from_numpy(grey))
        got = wrapped(torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 2, 3, 1))))
        same_grey = wrapped(torch.from_numpy(file_input(grey, nhwc=True, grey_from_rgb=True)))  # R = G = B
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(same_grey, want, rtol=1e-5, atol=1e-5)
    assert model.conv.in_channels == 1  # the caller's model is left as it was


def test_calibration_is_laid_out_like_the_file_input_and_rgb_models_keep_their_channels():
    cal = np.zeros((2, 3, 6, 5), np.float32)
    _, shape, out, info = app_facing(torch.nn.Conv2d(3, 2, 1), (1, 3, 6, 5), cal, nhwc=True, grey_from_rgb=True)
    assert shape == (1, 6, 5, 3) and out.shape == (2, 6, 5, 3) and not info["grey_from_rgb"]
    model = Grey()
    assert app_facing(model, SHAPE, None, nhwc=False, grey_from_rgb=False)[0] is model
    with pytest.raises(ModelError, match=r"image model input \(1, C, H, W\)"):
        app_facing(model, (1, 8), None, nhwc=True, grey_from_rgb=False)

"""The input an app hands an image classifier: NHWC, RGB — put in front of a PyTorch (NCHW) model before conversion.

App tooling takes images channels-last: MediaPipe's ``ImageClassifier`` (and the TFLite Task Library before it) reads
a ``[1, H, W, 3]`` input described by ``ImageProperties`` and refuses anything else — an NCHW tensor, and also a
``[1, H, W, 1]`` grey one (MediaPipe: "Only RGB color space is supported", depth must be 3 or 4). So before
litert-torch converts an image model, :func:`app_facing` wraps it:

* ``nhwc``: the wrapper takes ``[N, H, W, C]`` and permutes to NCHW as its first op. litert-torch lowers the NCHW
  convolutions to TFLite's NHWC ones by transposing (for one channel: reshaping) the input itself; the two cancel.
* ``grey_from_rgb``: a model trained on grey images takes RGB and makes grey itself, with the weights of PIL's
  ``convert("L")`` (ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B). The weights sum to 1, so the per-channel
  normalisation ``(x - mean) / std`` with the grey mean and std repeated for R, G and B gives exactly the normalised
  grey value: a grey image fed as RGB (R = G = B) gets the model's grey answer. When the input goes straight into
  one convolution (checked numerically on random RGB input), the weights are folded into it: a 3-channel first conv,
  no extra op (measured on the default student: a separate 1x1 conv cost +31 % int8 latency, the folded conv
  nothing measurable). Otherwise a 1x1 convolution is put in front.

Callers keep passing NCHW arrays as everywhere else in edgekd; :func:`file_input` turns them into the file's input.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgekd.core.errors import ModelError

GREY_WEIGHTS = (0.299, 0.587, 0.114)  # PIL Image.convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000


def file_input(x: np.ndarray, nhwc: bool, grey_from_rgb: bool) -> np.ndarray:
    """NCHW model input (N, C, H, W) -> what the wrapped file takes: RGB repeated from grey, then NHWC."""
    x = np.asarray(x, dtype=np.float32)
    if grey_from_rgb:
        x = np.repeat(x, 3, axis=1)
    if nhwc:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x)


def file_shape(input_shape: tuple[int, ...], nhwc: bool, grey_from_rgb: bool) -> tuple[int, ...]:
    """The file's input shape for an NCHW ``input_shape`` (1, C, H, W)."""
    n, c, h, w = input_shape
    c = 3 if grey_from_rgb else c
    return (n, h, w, c) if nhwc else (n, c, h, w)


def _folded(model: Any, shape: tuple[int, ...]) -> Any | None:
    """A copy of ``model`` whose first convolution takes RGB, the luma weights folded into it; None when that does not
    compute ``model(grey(rgb))`` — the input also feeds something else, or the first conv is not the input's."""
    import torch

    first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is None or first.in_channels != 1 or first.groups != 1:
        return None
    folded = copy.deepcopy(model).eval()
    conv = next(m for m in folded.modules() if isinstance(m, torch.nn.Conv2d))
    luma = torch.tensor(GREY_WEIGHTS, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        conv.weight = torch.nn.Parameter(conv.weight * luma)
    conv.in_channels = 3
    rgb = torch.randn((2, 3, *shape[2:]), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            want = model(torch.nn.functional.conv2d(rgb, luma))
            got = folded(rgb)
    except Exception:  # the first registered conv is not where the input goes
        return None
    ok = got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-4 * (1 + float(want.abs().max())))
    return folded if ok else None


def app_facing(model: Any, shape: tuple[int, ...], calibration: np.ndarray | None, nhwc: bool, grey_from_rgb: bool):
    """(module to convert, its input shape, calibration laid out like that input, info) for an NCHW ``model`` at
    ``shape`` (1, C, H, W). ``info`` says what the file takes: ``grey_from_rgb`` (only for a 1-channel model) and how
    the grey is made (``grey_conversion``)."""
    info: dict[str, Any] = {"grey_from_rgb": False}
    if not (nhwc or grey_from_rgb):
        return model, shape, calibration, info
    if len(shape) != 4:
        raise ModelError(f"an NHWC or RGB file input needs an image model input (1, C, H, W), got {shape}")
    import torch

    model.eval()
    grey_from_rgb = bool(grey_from_rgb) and shape[1] == 1
    inner, grey = model, None
    if grey_from_rgb:
        folded = _folded(model, shape)
        info.update(grey_from_rgb=True, grey_conversion="folded into the first convolution" if folded else "1x1 conv")
        inner = folded or model
        grey = None if folded else torch.tensor(GREY_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)

    class ImageInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = inner
            self.register_buffer("grey", grey, persistent=False)

        def forward(self, x):
            if nhwc:
                x = x.permute(0, 3, 1, 2)
            if self.grey is not None:
                x = torch.nn.functional.conv2d(x, self.grey)
            return self.model(x)

    if calibration is not None:
        calibration = file_input(calibration, nhwc, grey_from_rgb)
    return ImageInput().eval(), file_shape(shape, nhwc, grey_from_rgb), calibration, info

"""A Hugging Face ``transformers`` image-classification model saved in a local folder (``model.save_pretrained``:
config.json + model.safetensors), as a plain module: images in, logits out.

Only the folder is read: nothing is downloaded (``local_files_only``) and no code from the folder runs (a model that
needs ``trust_remote_code`` is refused). When the data has another number of classes than the saved head, the head is
replaced by a new one (initialised from the pipeline's seed) and the log says so.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgekd.core.console import log
from edgekd.core.errors import ModelError


class HFImageClassifier(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).logits


def build_hf(folder: str, in_channels: int, num_classes: int) -> nn.Module:
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(
            f"Hugging Face model folder '{path}' has no config.json (make one with model.save_pretrained(folder); "
            "edgekd never downloads a model)"
        )
    from edgekd.models.libraries import prepare_torchvision

    prepare_torchvision()  # transformers' image code imports torchvision when it is installed
    try:
        from transformers import AutoConfig, AutoModelForImageClassification
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ModelError(f"loading '{path}' needs transformers: pip install 'edgekd[text]'") from None
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # a bad or remote-code config: one line
        raise ModelError(f"cannot read the Hugging Face config in '{path}': {str(exc).splitlines()[0][:200]}") from None
    channels = getattr(config, "num_channels", in_channels)
    if channels != in_channels:
        raise ModelError(f"Hugging Face model '{path}' takes {channels}-channel images but the data has {in_channels}")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its "newly initialized" warning is said below, in one line of ours
    try:
        model = AutoModelForImageClassification.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, num_labels=num_classes, ignore_mismatched_sizes=True
        )
    except Exception as exc:
        raise ModelError(f"cannot load the Hugging Face model in '{path}': {str(exc).splitlines()[0][:200]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if config.num_labels != num_classes:
        saved = config.num_labels
        log(f"  {path.name}: head replaced ({saved} classes saved, the data has {num_classes}); the new head starts "
            "from the pipeline's seed")  # fmt: skip
    return HFImageClassifier(model.eval())

"""Rebuild tiny_cnn.tflite.bin, the 2.6 KB model the device tests push around (run from the repository root).

    python tests/devices/data/make_tiny_model.py

A seeded 1x8x8 -> 4-class CNN converted with litert-torch (NCHW, fp32). It is stored instead of built per test run:
conversion takes ~15 s, the device tests have a 60 s budget. The .bin suffix keeps it past the repository's *.tflite
ignore rule; the tests copy it to a .tflite name.
"""

from pathlib import Path

import litert_torch
import torch

OUT = Path(__file__).with_name("tiny_cnn.tflite.bin")


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv1(x)).mean(dim=(2, 3)))


if __name__ == "__main__":
    torch.manual_seed(0)
    tmp = OUT.with_suffix("")  # litert-torch wants a .tflite name
    litert_torch.convert(TinyCNN().eval(), (torch.zeros(1, 1, 8, 8),)).export(str(tmp))
    tmp.replace(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")

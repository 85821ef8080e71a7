"""edgekd: distil a big PyTorch model into a small one and ship it to the edge, with measured numbers."""

__version__ = "0.1.0"

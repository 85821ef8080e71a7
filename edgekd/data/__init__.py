"""Data: sources (digits, image folders, npz), seeded splits, normalisation and augmentation."""

from edgekd.data.dataset import SplitData, augment, batches, build_splits, normalize

__all__ = ["SplitData", "augment", "batches", "build_splits", "normalize"]

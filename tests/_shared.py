"""Helpers shared by tests and benchmark scripts (a plain module: two conftest.py files cannot both be imported)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny_pipeline_doc(**overrides) -> dict:
    """A pipeline that goes through every stage on 8x8 digits with tiny models and one epoch each."""
    doc = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "digits", "image_size": 8, "augment": {"enabled": True, "max_shift": 1}},
        "stages": [
            {
                "stage": "teacher",
                "model": {"name": "resnet_teacher", "kwargs": {"widths": [8, 16, 32], "depth": 1}},
                "train": {"epochs": 1, "batch_size": 128},
            },
            {
                "stage": "distill",
                "student": {"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}},
                "train": {"epochs": 1, "batch_size": 128},
            },
            {"stage": "export_onnx", "exporter": "torchscript", "min_int8_agreement": 0.5},
            {"stage": "convert_tflite", "min_int8_agreement": 0.5, "min_fp16_agreement": 0.5},
            {"stage": "benchmark", "warmup": 1, "runs": 5},
            {"stage": "report"},
        ],
    }
    doc.update(overrides)
    return doc

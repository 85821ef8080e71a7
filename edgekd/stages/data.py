"""The data stage (always first, configured by the pipeline's top-level ``data:`` block): split and save the data."""

from __future__ import annotations

from edgekd.artifacts import Dataset
from edgekd.config import DataConfig, StageConfig
from edgekd.data import build_splits
from edgekd.stages.base import Stage


class DataStageConfig(StageConfig, DataConfig):
    pass


def run_data(cfg: DataStageConfig, ctx, inputs) -> list[Dataset]:
    data = build_splits(cfg)
    counts = {s: len(v[1]) for s, v in data.arrays.items()}
    ctx.note(f"data: {cfg.source}, {data.num_classes} classes, splits {counts}, input {list(data.input_shape)}")
    return [Dataset("dataset", data.save(ctx.out_dir / "dataset.npz"), {**data.meta(), "counts": counts})]


DATA_STAGE = Stage("data", DataStageConfig, run_data, lambda cfg, store: [], ("scikit-learn", "pillow"))

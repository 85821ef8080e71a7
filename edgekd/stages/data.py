"""The data stage (always first, configured by the pipeline's top-level ``data:`` block): split and save the data."""

from __future__ import annotations

import shutil

from edgekd.core.artifacts import Dataset
from edgekd.core.config import DataConfig, StageConfig
from edgekd.data import build_splits
from edgekd.stages.base import Stage


class DataStageConfig(StageConfig, DataConfig):
    pass


def run_data(cfg: DataStageConfig, ctx, inputs) -> list[Dataset]:
    work = ctx.out_dir / ".work"  # memory-mapped splits of a streamed image folder, folded into dataset.npz below
    data = build_splits(cfg, work)
    counts = {s: len(v[1]) for s, v in data.arrays.items()}
    data_meta = data.meta()
    ctx.note(f"data: {cfg.source}, {data.num_classes} classes, splits {counts}, input {list(data.input_shape)}")
    path = data.save(ctx.out_dir / "dataset.npz")
    del data
    shutil.rmtree(work, ignore_errors=True)
    return [Dataset("dataset", path, {**data_meta, "counts": counts})]


DATA_STAGE = Stage("data", DataStageConfig, run_data, lambda cfg, store: [], ("scikit-learn", "pillow"))

"""Stages: one file each, registered by name. Importing this package fills the registry."""

from edgekd.stages import (  # noqa: F401
    benchmark,
    convert_tflite,
    distill,
    export_onnx,
    prune,
    qat,
    report,
    teacher,
    text_benchmark,
    text_data,
    text_distill,
    text_export,
    text_teacher,
)
from edgekd.stages.base import STAGES, Stage, StageContext, register_stage
from edgekd.stages.data import DATA_STAGE

__all__ = ["DATA_STAGE", "STAGES", "Stage", "StageContext", "register_stage"]

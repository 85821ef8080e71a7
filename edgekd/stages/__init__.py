"""Stages: one file each, registered by name. Importing this package imports every module in it, which fills the
registry: adding a stage is adding its file (``@register_stage`` inside), nothing else."""

import importlib
import pkgutil

from edgekd.core.stage import STAGES, Stage, StageContext, register_stage
from edgekd.stages.data import DATA_STAGE, DATA_STAGES

for _module in pkgutil.iter_modules(__path__):  # alphabetical, so the registry's order never depends on the disk
    if _module.name != "data":
        importlib.import_module(f"{__name__}.{_module.name}")

import edgekd.tasks  # noqa: E402, F401  (stage forms of tasks kept in files of their own)

__all__ = ["DATA_STAGE", "DATA_STAGES", "STAGES", "Stage", "StageContext", "register_stage"]

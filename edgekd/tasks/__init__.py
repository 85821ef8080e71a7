"""Stage forms of tasks kept in one file each (``edgekd/tasks/<task>.py``): importing this package imports every
module in it, so their ``@register_stage(..., task=...)`` forms join the stage registry. The two built-in tasks keep
their forms in the stage files themselves (image classification, and text embedding in each file's text section);
docs/design.md, "Adding a task", says when a task file is the better home."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

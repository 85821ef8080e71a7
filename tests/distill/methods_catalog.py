"""Every distillation method, as the distill-stage keys of a tiny run (tests run each one and export its student).

Keys are merged into the distill stage of tests/_shared.py's tiny pipeline (8x8 digits, tiny models, one epoch).
An entry may instead hold ``{"_stages": [stage dicts]}``: those stages replace the tiny pipeline's distill stage
(for methods that need several stages, e.g. progressive distillation or a second teacher); the last stage must
output ``student``.
"""

METHODS: dict[str, dict] = {
    "hinton": {"temperature": 2.0, "alpha": 0.5},
}

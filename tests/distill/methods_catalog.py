"""Every distillation method, as the distill-stage keys of a tiny run (tests run each one and export its student).

Keys are merged into the distill stage of tests/_shared.py's tiny pipeline (8x8 digits, tiny models, one epoch).
An entry may instead hold ``{"_stages": [stage dicts]}``: those stages replace the tiny pipeline's distill stage
(for methods that need several stages, e.g. progressive distillation or a second teacher); the last stage must
output ``student``.
"""

# the progressive assistant stage, shared with tests/distill/test_progressive.py
ASSISTANT = {
    "stage": "distill",
    "name": "assistant",
    "output": "assistant",
    "student": {"name": "tiny_cnn", "kwargs": {"widths": [8, 16, 16]}},
    "baseline": False,
    "train": {"epochs": 1, "batch_size": 128},
}

METHODS: dict[str, dict] = {
    "hinton": {"temperature": 2.0, "alpha": 0.5},
    # --- part A: loss terms and teacher signals (tiny_cnn [4, 8, 8] student, tiny resnet [8, 16, 32] teacher) ---
    "feature": {"losses": [{"kind": "feature", "pairs": [{"student": "features.0", "teacher": "layers.0"}]}]},
    "attention": {
        "losses": [{"kind": "attention", "weight": 1000, "pairs": [{"student": "features.2", "teacher": "layers.0"}]}]
    },
    "relational": {"losses": [{"kind": "rkd", "student_layer": "pool", "teacher_layer": "pool"}]},
    "structural": {
        "losses": [
            {"kind": "fsp", "pairs": [{"student": ["features.0", "features.2"], "teacher": ["stem", "layers.0"]}]}
        ]
    },
    "purification": {"purify": {"mode": "drop", "when": "wrong_or_unconfident"}},
    "multi_teacher": {
        "_stages": [
            {
                "stage": "teacher",
                "name": "teacher2",
                "output": "teacher2",
                "train": {"epochs": 1, "batch_size": 128},
                "model": {"name": "vit_tiny", "kwargs": {"patch": 2, "dim": 8, "depth": 1, "heads": 2}},
            },
            {
                "stage": "distill",
                "student": {"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}},
                "baseline": False,
                "teachers": ["teacher", "teacher2"],
                "teacher_weighting": "confidence",
                "train": {"epochs": 1, "batch_size": 128},
            },
        ]
    },
    "heterogeneous_cnn_to_vit": {
        "student": {"name": "vit_tiny", "kwargs": {"patch": 2, "dim": 8, "depth": 2, "heads": 2}},
        "losses": [
            {"kind": "feature", "pairs": [{"student": "blocks.0", "teacher": "layers.1"}]},
            {"kind": "ofa", "student_layers": ["blocks.1"], "hidden": 8},
        ],
    },
    "heterogeneous_vit_to_cnn": {
        "_stages": [
            {
                "stage": "teacher",
                "name": "teacher_vit",
                "output": "teacher_vit",
                "train": {"epochs": 1, "batch_size": 128},
                "model": {"name": "vit_tiny", "kwargs": {"patch": 2, "dim": 16, "depth": 1, "heads": 2}},
            },
            {
                "stage": "distill",
                "student": {"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}},
                "baseline": False,
                "teachers": ["teacher_vit"],
                "train": {"epochs": 1, "batch_size": 128},
                "losses": [
                    {"kind": "feature", "pairs": [{"student": "features.2", "teacher": "blocks.0"}]},
                    {"kind": "ofa", "student_layers": ["features.2"], "hidden": 8},
                ],
            },
        ]
    },
    # --- part B: strategies (no external teacher, cohorts, synthetic data, chains of distill stages) ---
    "born_again": {"strategy": {"kind": "born_again", "generations": 1}},
    "byot": {"strategy": {"kind": "byot", "heads": ["features.0", "features.2"], "head_width": 4}},
    "online": {
        "strategy": {
            "kind": "online",
            "peers": [{"name": "resnet_teacher", "kwargs": {"widths": [8, 16, 32], "depth": 1}}],
        }
    },
    "data_free": {"strategy": {"kind": "data_free", "images": 40, "batch_size": 20, "iterations": 3}},
    "progressive": {
        "_stages": [
            ASSISTANT,
            {
                "stage": "distill",
                "teachers": ["assistant"],
                "student": {"name": "tiny_cnn", "kwargs": {"widths": [4, 8, 8]}},
                "baseline": False,
                "train": {"epochs": 1, "batch_size": 128},
            },
        ]
    },
}

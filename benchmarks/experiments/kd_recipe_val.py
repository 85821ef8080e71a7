"""How the default pipeline's distillation recipe was chosen: validation split only, never the test split.

    python benchmarks/experiments/kd_recipe_val.py              # seeds 0 1, ~10 min on 2 cores
    python benchmarks/experiments/kd_recipe_val.py --seeds 0 1 2

For each seed: train the default teacher (12 epochs), then the default student from scratch and with Hinton KD at a
few (temperature, alpha) settings, 20 epochs each, and print validation accuracy and cross-entropy. Validation
accuracy saturates near 100 % on this data, so the mean validation cross-entropy decides.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from edgekd.core.config import AugmentConfig, DataConfig, TrainConfig
from edgekd.data import build_splits
from edgekd.distill import hinton_loss
from edgekd.models.zoo import MobileNetV2Student, ResNetTeacher
from edgekd.training.loop import evaluate, fit, seed_everything

CANDIDATES = [("scratch", 0.0, 0.0), ("kd T=4 a=0.7", 4.0, 0.7), ("kd T=4 a=0.9", 4.0, 0.9), ("kd T=2 a=0.5", 2.0, 0.5)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    data, aug = build_splits(DataConfig(image_size=32)), AugmentConfig()
    losses: dict[str, list[float]] = {name: [] for name, _, _ in CANDIDATES}
    for seed in args.seeds:
        seed_everything(seed)
        teacher = ResNetTeacher()
        fit(teacher, data, TrainConfig(epochs=12), aug, seed, lambda lg, y, _x: F.cross_entropy(lg, y), "teacher")
        for name, t, a in CANDIDATES:

            def kd(logits, y, x, t=t, a=a, teacher=teacher):
                with torch.inference_mode():
                    t_logits = teacher(x)
                return hinton_loss(logits, t_logits.clone(), y, t, a)

            seed_everything(seed)
            student = MobileNetV2Student()
            fit(student, data, TrainConfig(epochs=20, lr=0.004), aug, seed, kd, name)
            acc, loss = evaluate(student, data, "val")
            losses[name].append(loss)
            print(f"seed {seed}  {name:14} val accuracy {100 * acc:6.2f} %  val cross-entropy {loss:.4f}", flush=True)
    print()
    for name, vals in sorted(losses.items(), key=lambda kv: statistics.mean(kv[1])):
        print(f"{name:14} mean val cross-entropy {statistics.mean(vals):.4f}")


if __name__ == "__main__":
    main()

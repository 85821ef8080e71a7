"""Every distillation method against the scratch baseline and Hinton KD: test accuracy (mean ± std over seeds).

    python benchmarks/distill_methods.py                          # every pipelines/methods/*.yaml, seeds 0 1 2
    python benchmarks/distill_methods.py --methods feature online --seeds 0
    python benchmarks/distill_methods.py --epochs 10              # shorter (the same for every method)
    python benchmarks/distill_methods.py --seeds 1 --json s1.json # one seed per process, then:
    python benchmarks/distill_methods.py --merge s0.json s1.json s2.json

Each method is its example pipeline (pipelines/methods/<method>.yaml) run up to the last distill stage, with the
seed overridden; "scratch" and "hinton" come from pipelines/mobile_vision.yaml (its distill stage and its baseline).
Runs of one seed with the same teacher stage(s) share a run directory, so each teacher is trained once per seed.
Same student, data, augmentation and training recipe for all methods unless a method's YAML says otherwise.
Accuracy is the PyTorch student's on the test split; "s/epoch" is the distill stage's wall time / epochs (summed over
the stages of multi-stage methods, e.g. progressive). Nothing here was tuned on the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("EDGEKD_QUIET", "1")

from edgekd.core.loader import load_pipeline  # noqa: E402
from edgekd.core.pipeline import run_pipeline  # noqa: E402
from edgekd.data import SplitData  # noqa: E402
from edgekd.models.io import load_torch_model  # noqa: E402
from edgekd.training.loop import accuracy  # noqa: E402

TRAINING_STAGES = ("teacher", "distill")


def method_pipelines() -> dict[str, Path]:
    return {p.stem: p for p in sorted((ROOT / "pipelines" / "methods").glob("*.yaml"))}


def run_method(path: Path, seed: int, run_dir: Path, epochs: int | None, baseline: bool) -> dict:
    cfg = load_pipeline(path, [f"seed={seed}"])
    # only the training stages: accuracy is measured here on the PyTorch student
    cfg.stages = [s for s in cfg.stages if s.stage in TRAINING_STAGES]
    for s in cfg.stages:
        if s.stage == "distill":
            s.baseline = baseline
            if epochs:
                s.train.epochs = epochs
    # methods with the same teacher stage(s) share a run directory, so each teacher is trained once per seed
    teachers = json.dumps([s.model_dump(mode="json") for s in cfg.stages if s.stage == "teacher"], sort_keys=True)
    res = run_pipeline(cfg, run_dir / hashlib.sha256(teachers.encode()).hexdigest()[:10])
    data = SplitData.load(res.artifacts["dataset"].path)
    distill = [(s, r) for s, r in zip(cfg.stages, res.stages[1:], strict=True) if s.stage == "distill"]
    seconds = sum(r.seconds for _, r in distill)
    ep = sum(s.train.epochs for s, _ in distill)
    out = {"accuracy": accuracy(load_torch_model(res.artifacts["student"]), data, "test"), "s_per_epoch": seconds / ep}
    if baseline:
        out["baseline_accuracy"] = accuracy(load_torch_model(res.artifacts["baseline"]), data, "test")
        out["s_per_epoch"] = seconds / (2 * ep)  # the stage also trained the baseline with the same recipe
    return out


def mean_std(values: list[float], scale: float = 100.0) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):6.2f} ± {scale * sd:4.2f}"


def print_table(acc: dict, speed: dict, seeds: list[int], epochs: int | None, chosen: list[str]) -> None:
    print(f"\ntest accuracy (%), mean ± std over seeds {seeds}; distill epochs: {epochs or 'as in YAML'}")
    print(f"{'method':28} {'accuracy':>15} {'vs scratch':>11} {'vs hinton':>10} {'s/epoch':>8}  per seed")
    for name in ["scratch", "hinton", *chosen]:
        d_s = 100 * (statistics.mean(acc[name]) - statistics.mean(acc["scratch"]))
        d_h = 100 * (statistics.mean(acc[name]) - statistics.mean(acc["hinton"]))
        per = " / ".join(f"{100 * a:.2f}" for a in acc[name])
        sec = statistics.mean(speed[name])
        print(f"{name:28} {mean_std(acc[name]):>15} {d_s:+11.2f} {d_h:+10.2f} {sec:8.2f}  {per}")


def merge(files: list[Path]) -> int:
    """Print one table from the --json files of runs with different seeds (e.g. run in parallel)."""
    acc: dict[str, list[float]] = {}
    speed: dict[str, list[float]] = {}
    seeds: list[int] = []
    for f in files:
        d = json.loads(f.read_text())
        seeds += d["seeds"]
        for k, v in d["accuracy"].items():
            acc.setdefault(k, []).extend(v)
        for k, v in d["s_per_epoch"].items():
            speed.setdefault(k, []).extend(v)
    print_table(acc, speed, seeds, d.get("epochs"), [k for k in acc if k not in ("scratch", "hinton")])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", help="method names (pipelines/methods/<name>.yaml); default: all")
    ap.add_argument("--epochs", type=int, help="override the distill epochs of every method (same for all)")
    ap.add_argument("--keep", type=Path, help="keep run directories here instead of a temp dir")
    ap.add_argument("--json", type=Path, help="also write the per-seed figures to this file")
    ap.add_argument("--merge", type=Path, nargs="+", help="print one table from several --json files, run nothing")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge)
    pipelines = method_pipelines()
    chosen = args.methods or list(pipelines)
    unknown = [m for m in chosen if m not in pipelines]
    if unknown:
        print(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(pipelines)}", file=sys.stderr)
        return 2
    base = args.keep or Path(tempfile.mkdtemp(prefix="edgekd-methods-"))
    acc: dict[str, list[float]] = {"scratch": [], "hinton": []}
    speed: dict[str, list[float]] = {"scratch": [], "hinton": []}
    for seed in args.seeds:
        run_dir = base / f"seed{seed}"
        ref = run_method(ROOT / "pipelines" / "mobile_vision.yaml", seed, run_dir, args.epochs, baseline=True)
        acc["hinton"].append(ref["accuracy"])
        acc["scratch"].append(ref["baseline_accuracy"])
        speed["hinton"].append(ref["s_per_epoch"])
        speed["scratch"].append(ref["s_per_epoch"])  # the stage's time split evenly: see run_method
        print(f"seed {seed}: hinton {100 * ref['accuracy']:.2f}  scratch {100 * ref['baseline_accuracy']:.2f}",
              flush=True)  # fmt: skip
        for name in chosen:
            r = run_method(pipelines[name], seed, run_dir, args.epochs, baseline=False)
            acc.setdefault(name, []).append(r["accuracy"])
            speed.setdefault(name, []).append(r["s_per_epoch"])
            print(f"seed {seed}: {name:26} {100 * r['accuracy']:.2f} %  {r['s_per_epoch']:.2f} s/epoch", flush=True)
    print_table(acc, speed, args.seeds, args.epochs, chosen)
    if args.json:
        figures = {"seeds": args.seeds, "epochs": args.epochs, "accuracy": acc, "s_per_epoch": speed}
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Distillation speed: edgekd's distill stage against the plain distillation loop, and 1 vs 2 processes.

    python benchmarks/distill_speed.py                  # 3 seeds, the default pipeline's recipe (~15 min on 2 cores)
    python benchmarks/distill_speed.py --ablate         # + the live teacher, each lever alone, other views (seed 0)
    python benchmarks/distill_speed.py --scale          # + the distill stage under torchrun, 1 vs 2 processes
    python benchmarks/distill_speed.py --augment off    # the same without augmentation (the cache is then exact)
    python benchmarks/distill_speed.py --quick          # tiny settings, to check the script (seconds)

Same teacher (trained once, seed 0, as pipelines/mobile_vision.yaml does), student, data, augmentation, optimiser,
schedule, epochs, batch size and threads for every row; rows run in one process, one after another, in an order
rotated per seed so that a change in machine load does not favour one row. The "reused" row runs right after the
cached row, in its run directory, so it finds the teacher's logits that row saved (what a second run with the same
teacher, data and seed does: another student, temperature or learning rate). The reference is the loop torchdistill-
style code runs: teacher in eval mode under no_grad on every batch, then student forward/backward, validation after
every epoch keeping the best. edgekd rows run the real distill stage (``run_pipeline``) and are timed by the stage's
own clock, which also counts what the loop does not do (loading the data and teacher, building the cache, saving).
Throughput = epochs x training images / seconds, by the wall clock and per CPU-second of this process (1 thread: on a
quiet machine the two agree; on a shared one the CPU figure is the one that does not depend on the other jobs).
Accuracy is on the test split, mean over seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edgekd.core.artifacts import Artifact
from edgekd.core.config import AugmentConfig, DataConfig
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.data import build_splits, normalize
from edgekd.data.dataset import draw_augment, warp
from edgekd.models import build_model
from edgekd.models.io import load_torch_model
from edgekd.training.loop import evaluate, predict_logits, seed_everything

STUDENT = {"name": "mobilenetv2_student"}
TEACHER = {"name": "resnet_teacher"}
# name -> (teacher_cache, channels_last); "plain" is the reference loop
FAST = "edgekd, cache (views) + channels-last"
REUSED = "edgekd, cache (views) reused + channels-last"  # a second run on the first one's saved cache
ROWS = {
    FAST: ({"enabled": True}, True),
    "edgekd, cache of un-augmented logits + channels-last": ({"enabled": True, "unaugmented": True}, True),
}
ABLATIONS = {  # first seed only
    "edgekd, live teacher (framework overhead)": ({"enabled": False}, False),
    "edgekd, cache (views) only": ({"enabled": True}, False),
    "edgekd, channels-last only": ({"enabled": False}, True),
    "edgekd, cache (views = 4) + channels-last": ({"enabled": True, "views": 4}, True),
    "edgekd, cache (views = epochs) + channels-last": ({"enabled": True, "views": "epochs"}, True),
}


def plain_loop(teacher, data, seed: int, a) -> tuple[float, float, torch.nn.Module]:
    """The reference: a plain distillation loop, written out as torchdistill-style code has it."""
    seed_everything(seed)
    student = build_model(STUDENT, data.input_shape[1], data.num_classes)
    xtr, ytr = data.arrays["train"]
    steps = -(-len(ytr) // a.batch_size)
    opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.epochs * steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    teacher.eval()
    t, alpha = a.temperature, a.alpha
    best = (-1.0, 0.0, None)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.epochs):
        student.train()
        order = torch.randperm(len(ytr), generator=gen).numpy()
        for i in range(0, len(ytr), a.batch_size):
            idx = order[i : i + a.batch_size]
            x, y = torch.from_numpy(xtr[idx]), torch.from_numpy(ytr[idx])
            if a.aug.enabled:
                x = warp(x, draw_augment(len(x), x.shape[2], gen, a.aug.max_shift, a.aug.max_rotate_deg))
            x = normalize(x, data.mean, data.std)
            with torch.no_grad():
                t_logits = teacher(x)
            s_logits = student(x)
            kd = F.kl_div(F.log_softmax(s_logits / t, 1), F.softmax(t_logits / t, 1), reduction="batchmean") * t * t
            loss = alpha * kd + (1 - alpha) * F.cross_entropy(s_logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc, val_loss = evaluate(student, data, "val")
        if (acc, -val_loss) > best[:2]:
            best = (acc, -val_loss, copy.deepcopy(student.state_dict()))
    student.load_state_dict(best[2])
    return time.perf_counter() - t0, time.process_time() - c0, student.eval()


def pipeline_doc(seed: int, teacher_ckpt: Path, cache: dict, channels_last: bool, a) -> dict:
    cache = {**cache, "views": a.epochs if cache.get("views") == "epochs" else cache.get("views", a.views)}
    return {
        "name": "distill_speed",
        "seed": seed,
        "data": {"source": "digits", "image_size": a.image_size, "augment": a.aug.model_dump()},
        "stages": [
            {"stage": "teacher", "model": TEACHER, "checkpoint": str(teacher_ckpt)},
            {
                "stage": "distill",
                "student": STUDENT,
                "temperature": a.temperature,
                "alpha": a.alpha,
                "baseline": False,
                "teacher_cache": cache,
                "train": {
                    "epochs": a.epochs,
                    "batch_size": a.batch_size,
                    "optimizer": "adamw",
                    "lr": a.lr,
                    "schedule": "cosine",
                    "channels_last": channels_last,
                },
            },
        ],
    }


def edgekd_row(seed: int, teacher_ckpt: Path, cache: dict, channels_last: bool, a, out: Path, template: Path):
    """The distill stage in a copy of ``template`` (data and teacher stages done): only the distill stage runs.

    Returns (wall seconds by the stage's clock, CPU seconds of this process over the run, student, its metadata).
    An existing ``out`` keeps its teacher cache and loses its distill stage (the "reused" row).
    """
    if out.exists():
        shutil.rmtree(next(out.glob("*_distill")))
    else:
        shutil.copytree(template, out)
    cfg = validate_document(pipeline_doc(seed, teacher_ckpt, cache, channels_last, a))
    c0 = time.process_time()
    res = run_pipeline(cfg, out)
    cpu = time.process_time() - c0
    assert [r.status for r in res.stages] == ["cached", "cached", "ran"], res.stages
    student = res.artifacts["student"]
    return res.stages[-1].seconds, cpu, load_torch_model(student), student.meta


def train_teacher(a, out: Path) -> Path:
    doc = pipeline_doc(0, Path("unused"), {"enabled": False}, False, a)
    doc["stages"] = [
        {
            "stage": "teacher",
            "model": TEACHER,
            "train": {"epochs": a.teacher_epochs, "batch_size": 64, "optimizer": "adamw", "lr": 0.002},
        }
    ]
    return run_pipeline(validate_document(doc), out).artifacts["teacher"].path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mean_sd(v: list[float]) -> str:
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"


def scale(a, teacher_ckpt: Path, base: Path) -> None:
    """The fast distill stage with 1 process and with 2 (torchrun, gloo), same YAML; throughput and the difference."""
    pipe = base / "scale.yaml"
    cache, cl = ROWS[FAST]
    pipe.write_text(json.dumps(pipeline_doc(0, teacher_ckpt, cache, cl, a)))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "EDGEKD_QUIET": "1"}
    runs = {}
    for procs in (1, 2):
        out = base / f"scale{procs}"
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        torchrun += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        launch = [sys.executable] if procs == 1 else torchrun
        launch += ["-m", "edgekd"]
        subprocess.run([*launch, "run", str(pipe), "-o", str(out)], env=env, check=True, capture_output=True)
        manifest = json.loads(next(out.glob("*_distill/manifest.json")).read_text())
        art = next(o for o in manifest["outputs"] if o["name"] == "student")
        runs[procs] = (manifest["seconds"], load_torch_model(Artifact.from_manifest(art, out / "02_distill")))
    data = build_splits(DataConfig(image_size=a.image_size))
    n = len(data.arrays["train"][1]) * a.epochs
    logits = {p: predict_logits(m, data.arrays["test"][0], data.mean, data.std) for p, (_, m) in runs.items()}
    print(f"\n1 vs 2 processes (torchrun, gloo, {a.threads} thread each; seed 0; distill stage seconds):")
    for p, (sec, m) in runs.items():
        print(
            f"  {p} process(es): {sec:7.1f} s  {n / sec:8.1f} samples/s  test accuracy "
            f"{100 * evaluate(m, data, 'test')[0]:.2f} %"
        )
    agree = float((logits[1].argmax(1) == logits[2].argmax(1)).float().mean())
    print(
        f"  speed-up {runs[1][0] / runs[2][0]:.2f}x; test top-1 agreement 1 vs 2 processes {100 * agree:.2f} %, "
        f"max |logit difference| {float((logits[1] - logits[2]).abs().max()):.3g}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--views", type=int, default=8, help="teacher_cache.views")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for every row")
    ap.add_argument("--augment", choices=["on", "off"], default="on")
    ap.add_argument("--teacher", type=Path, help="a trained teacher state_dict (default: train it, seed 0)")
    ap.add_argument(
        "--ablate", action="store_true", help="also the live teacher, each lever alone, other views (first seed)"
    )
    ap.add_argument("--scale", action="store_true", help="also 1 vs 2 processes under torchrun")
    ap.add_argument("--quick", action="store_true", help="tiny settings that only check the script")
    ap.add_argument("--json", type=Path, help="write the measurements here")
    a = ap.parse_args()
    a.image_size, a.batch_size, a.lr, a.temperature, a.alpha, a.teacher_epochs = 32, 64, 0.004, 2.0, 0.5, 12
    if a.quick:
        a.image_size, a.epochs, a.views, a.teacher_epochs, a.seeds = 8, 2, 2, 1, a.seeds[:2]
    a.aug = AugmentConfig(enabled=a.augment == "on")
    torch.set_num_threads(a.threads)
    base = Path(tempfile.mkdtemp(prefix="edgekd-distill-speed-"))
    t0 = time.perf_counter()
    teacher_ckpt = a.teacher or train_teacher(a, base / "teacher")
    print(f"teacher: {teacher_ckpt} ({time.perf_counter() - t0:.0f} s)", flush=True)
    data = build_splits(DataConfig(image_size=a.image_size))
    n = len(data.arrays["train"][1]) * a.epochs
    teacher = build_model(TEACHER, 1, data.num_classes)
    teacher.load_state_dict(torch.load(teacher_ckpt, weights_only=True))
    rows = {"plain loop (reference)": None, **ROWS}
    results: dict[str, dict[int, tuple[float, float, float]]] = {}  # row -> seed -> (samples/s wall, cpu, accuracy)
    for i, seed in enumerate(a.seeds):
        template = base / f"template{seed}"
        doc = pipeline_doc(seed, teacher_ckpt, {"enabled": False}, False, a)
        doc["stages"][1]["enabled"] = False
        run_pipeline(validate_document(doc), template)
        names = list(rows) + (list(ABLATIONS) if a.ablate and i == 0 else [])
        names = names[i % len(names) :] + names[: i % len(names)]  # rotate the order per seed
        names.insert(names.index(FAST) + 1, REUSED)
        for j, name in enumerate(names):
            if name == "plain loop (reference)":
                sec, cpu, student = plain_loop(teacher, data, seed, a)
                extra = ""
            else:
                cache, cl = {**ROWS, **ABLATIONS, REUSED: ROWS[FAST]}[name]
                out = base / (f"s{seed}-{names.index(FAST)}" if name == REUSED else f"s{seed}-{j}")
                sec, cpu, student, meta = edgekd_row(seed, teacher_ckpt, cache, cl, a, out, template)
                extra = f"  cache {meta['teacher_cache']}" if "teacher_cache" in meta else ""
            acc = 100 * evaluate(student, data, "test")[0]
            results.setdefault(name, {})[seed] = (n / sec, n / cpu, acc)
            print(
                f"seed {seed}  {name:52} {sec:6.1f} s wall {cpu:6.1f} s CPU  {n / sec:6.1f} samples/s  "
                f"test {acc:.2f} %{extra}",
                flush=True,
            )
    ref = results["plain loop (reference)"]
    print(
        f"\n{a.epochs} epochs x {n // a.epochs} images, batch {a.batch_size}, {a.threads} thread(s), augmentation "
        f"{a.augment}, views {a.views}; seeds {a.seeds}; ratios use samples/s of the same seed's reference"
    )
    print("samples/s: wall clock, and per CPU-second of this process (insensitive to other jobs on a shared machine)")
    head = f"{'row':52} {'samples/s':>9} {'× plain, wall (per seed)':>26} {'× plain, CPU (per seed)':>25}"
    print(f"{head} {'test acc %':>13} {'Δ acc':>6}")
    for name, per_seed in results.items():
        seeds = sorted(per_seed)
        ratios = [[per_seed[s][k] / ref[s][k] for s in seeds] for k in (0, 1)]
        cols = [f"{statistics.mean(r):5.2f} ({'/'.join(f'{v:.2f}' for v in r):>14})" for r in ratios]
        acc = [per_seed[s][2] for s in seeds]
        d_acc = statistics.mean(acc) - statistics.mean(ref[s][2] for s in seeds)
        sps = statistics.mean(per_seed[s][0] for s in seeds)
        print(f"{name:52} {sps:9.1f} {cols[0]:>26} {cols[1]:>25} {mean_sd(acc):>13} {d_acc:+6.2f}")
    if a.json:
        a.json.write_text(json.dumps({k: {str(s): v for s, v in d.items()} for k, d in results.items()}, indent=1))
    if a.scale:
        scale(a, teacher_ckpt, base)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; run folders in {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compression figures: structured pruning (MACs, params, accuracy, LiteRT and onnxruntime latency) and QAT vs PTQ int8.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/compress.py                     # 3 seeds, ~30 min on 2 cores
    python benchmarks/compress.py --seeds 0 --keep runs/compress --rounds 4            # quicker, run dirs kept

Per seed: one run of pipelines/mobile_vision_compressed.yaml (``--set seed=N``; a kept run directory reuses its cached
stages). Every number printed comes from that run or from the device agent:

* accuracy: the benchmark stage's rows (the agent in the LiteRT interpreter / onnxruntime / torch, test split);
* latency, unpruned vs pruned: fresh agent processes (``edgekd.edge.transports.local.run_agent``, the code the benchmark
  stage runs), interleaved and alternating which goes first, ``--rounds`` rounds of ``--runs`` timed batch-1 runs at
  1 thread; the figure is the median over rounds of each round's median latency (robust to other jobs on the host);
* precision: read from each file (``tflite_inspect`` / ``onnx_inspect``): the weight and activation types of every
  conv/matmul, not the name of the file;
* QAT ranges: the learned scales found in each int8 file (recorded by the export stages).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "mobile_vision_compressed.yaml"
PAIRS = [  # (runtime label, unpruned file, pruned file)
    ("LiteRT fp32", "student-fp32.tflite", "student_pruned-fp32.tflite"),
    ("LiteRT int8 (PTQ)", "student-int8.tflite", "student_pruned-int8.tflite"),
    ("onnxruntime fp32", "student-fp32.onnx", "student_pruned-fp32.onnx"),
    ("onnxruntime int8 (PTQ QDQ)", "student-int8.onnx", "student_pruned-int8.onnx"),
]
QAT_LATENCY = [  # (runtime label, post-training int8 file, QAT int8 file) of the pruned student
    ("LiteRT int8", "student_pruned-int8.tflite", "student_pruned_qat-int8.tflite"),
    ("onnxruntime int8 QDQ", "student_pruned-int8.onnx", "student_pruned_qat-int8.onnx"),
]
QAT_PAIRS = [  # (label, post-training int8 row, QAT int8 row)
    ("student", "student/tflite-int8", "student_qat/tflite-int8"),
    ("pruned student", "student_pruned/tflite-int8", "student_pruned_qat/tflite-int8"),
]


def run_pipeline(out: Path, seed: int) -> None:
    cmd = [sys.executable, "-m", "edgekd", "run", str(PIPELINE), "-o", str(out), "--set", f"seed={seed}"]
    subprocess.run(cmd, check=True, env={**os.environ, "EDGEKD_QUIET": "1"})


def rows_of(out: Path) -> dict[str, dict]:
    report = json.loads(next(out.glob("*_report/report.json")).read_text())
    return {r["name"]: r for r in report["variants"] if r.get("status") == "ok"}


def file_of(out: Path, name: str) -> Path:
    found = sorted(out.glob(f"*/{name}"))
    if not found:
        sys.exit(f"{name} not found in {out}")
    return found[0]


def ms(values: list[float], digits: int = 2) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def latency_pairs(out: Path, rounds: int, runs: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Median over rounds of the agent's p50 latency (ms) for each (unpruned, pruned) pair, interleaved."""
    from edgekd.edge.bench_inputs import find_dataset, write_eval_npz

    tmp = Path(tempfile.mkdtemp(prefix="edgekd-compress-"))
    data = write_eval_npz(find_dataset(file_of(out, PAIRS[0][1])), tmp / "eval.npz")
    todo = PAIRS + [(f"QAT {label}", a, b) for label, a, b in QAT_LATENCY]
    pairs = [(file_of(out, a), file_of(out, b)) for _, a, b in todo]
    result = dict(zip([p[0] for p in todo], interleaved_p50(pairs, data, rounds, runs, warmup), strict=True))
    for label, (a, b) in result.items():
        print(f"  {label}: {a:.4f} -> {b:.4f} ms", flush=True)
    return result


def interleaved_p50(pairs: list[tuple[Path, Path]], data: Path, rounds: int, runs: int, warmup: int) -> list[tuple]:
    """Median over rounds of the agent's p50 latency for each (a, b) file pair, a and b alternating first."""
    from edgekd.edge.bench_inputs import find_meta, write_meta
    from edgekd.edge.transports.local import run_agent

    out = []
    for files in pairs:
        metas = [write_meta(find_meta(f), data.parent / f"{f.parent.name}-{f.stem}.json") for f in files]
        p50: list[list[float]] = [[], []]
        for r in range(rounds):
            for i in [0, 1] if r % 2 == 0 else [1, 0]:
                res = run_agent(files[i], metas[i], data, 1, warmup, runs, eval_limit=1)
                if res["status"] != "ok":
                    sys.exit(f"agent failed on {files[i]}: {res['error']}")
                p50[i].append(res["latency_ms"]["p50"])
        out.append((statistics.median(p50[0]), statistics.median(p50[1])))
    return out


def sparse_check(out: Path, rounds: int, runs: int, warmup: int) -> None:
    """Unstructured 50 % magnitude pruning of the student, exported as the stages export: latency vs the dense files."""
    import torch

    from edgekd.compress.pruning import mask_unstructured, remove_masks
    from edgekd.core.artifacts import Artifact
    from edgekd.core.fsutil import atomic_write_json
    from edgekd.edge.bench_inputs import find_dataset, write_eval_npz
    from edgekd.formats.onnx import export_onnx
    from edgekd.formats.tflite.via_litert_torch import convert_litert_torch
    from edgekd.models.io import load_torch_model

    distill = next(out.glob("*_distill"))
    entry = next(e for e in json.loads((distill / "manifest.json").read_text())["outputs"] if e["name"] == "student")
    art = Artifact.from_manifest(entry, distill)
    model = load_torch_model(art)
    sparsity = remove_masks(mask_unstructured(model, 0.5, []))
    work = Path(tempfile.mkdtemp(prefix="edgekd-sparse-"))
    shape = tuple(art.meta["input_shape"])
    with torch.no_grad():
        export_onnx(model, shape, work / "sparse-fp32.onnx", "dynamo", 18)
    convert_litert_torch(model, shape, work / "sparse-fp32.tflite", "fp32")
    meta = {k: v for k, v in art.meta.items() if k != "history"}
    for f in ("sparse-fp32.onnx", "sparse-fp32.tflite"):
        atomic_write_json(work / f"{Path(f).stem}.meta.json", {**meta, "input_layout": "NCHW"})
    data = write_eval_npz(find_dataset(file_of(out, "student-fp32.onnx")), work / "eval.npz")
    pairs = [(file_of(out, "student-fp32.tflite"), work / "sparse-fp32.tflite"),
             (file_of(out, "student-fp32.onnx"), work / "sparse-fp32.onnx")]  # fmt: skip
    res = interleaved_p50(pairs, data, rounds, runs, warmup)
    print(f"\n## Unstructured pruning ({sparsity:.0%} of conv/linear weights zero, same shapes)\n")
    print("| runtime (1 thread) | dense student p50 ms | sparse student p50 ms | change |")
    print("|---|---:|---:|---:|")
    for label, (a, b) in zip(("LiteRT fp32", "onnxruntime fp32"), res, strict=True):
        print(f"| {label} | {a:.4f} | {b:.4f} | {100 * (b / a - 1):+.1f} % |")


def precision_lines(out: Path, rows: dict[str, dict]) -> list[str]:
    """Each file's precision as the report gives it and as its tensors show it."""
    from edgekd.formats.onnx_inspect import inspect_onnx
    from edgekd.formats.tflite.flatbuffer import inspect_tflite

    lines = []
    for name, row in sorted(rows.items()):
        if row["format"] not in ("tflite", "onnx"):
            continue
        artifact, _, kind = name.partition("/")
        path = file_of(out, f"{artifact}-{kind.split('-', 1)[1]}.{row['format']}")
        if row["format"] == "tflite":
            info = inspect_tflite(path)
            ops = {(e["weight_dtype"], e["input_dtype"], e["output_dtype"]) for e in info["compute_ops"]}
        else:
            info = inspect_onnx(path)
            ops = {(e["weight"], e["input"], e["output"]) for e in info["compute_ops"]}
        seen = "; ".join(f"weights {w}, in {i}, out {o}" for w, i, o in sorted(ops))
        n = len(info["compute_ops"])
        lines.append(f"| {name} | {row['precision']} | {info['precision']} | {n} conv/matmul: {seen} |")
    return lines


def qat_scale_lines(out: Path) -> list[str]:
    lines = []
    for manifest in sorted(out.glob("*/manifest.json")):
        for o in json.loads(manifest.read_text())["outputs"]:
            meta = o["meta"]
            s = meta.get("qat_scales") or (meta.get("converter") or {}).get("scales")
            if s and o["name"].endswith("int8"):
                lines.append(
                    f"| {o['name']} | {s['found_in_file']}/{s['learned_activation_scales']} | "
                    f"{s['weight_scales_found']}/{s['learned_weight_scales']} | {s['max_rel_diff']:.1e} | "
                    f"{s['file_scales_not_learned']} |"
                )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", type=Path, help="keep (and reuse) run directories here instead of a temp dir")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved latency rounds per pair and seed")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--no-sparse", action="store_true", help="skip the unstructured-pruning latency check")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="edgekd-compress-"))
    rows: dict[int, dict[str, dict]] = {}
    lat: dict[int, dict[str, tuple[float, float]]] = {}
    for seed in args.seeds:
        out = base / f"seed{seed}"
        run_pipeline(out, seed)
        rows[seed] = rows_of(out)
        print(f"seed {seed}: run in {out}; latency rounds:", flush=True)
        lat[seed] = latency_pairs(out, args.rounds, args.runs, args.warmup)
    first = args.seeds[0]
    r0 = rows[first]

    def col(name: str, key: str = "accuracy") -> list[float]:
        return [100 * rows[s][name][key] for s in args.seeds]

    print("\n## Pruning (student -> student_pruned)\n")
    macs = {s: 1 - rows[s]["student_pruned/pytorch"]["macs"] / rows[s]["student/pytorch"]["macs"] for s in args.seeds}
    s0, p0 = r0["student/pytorch"], r0["student_pruned/pytorch"]
    print(f"MACs {s0['macs']:,} -> {p0['macs']:,}; params {s0['params']:,} -> {p0['params']:,} (seed {first})")
    print("MACs removed per seed: " + ", ".join(f"{s}: {100 * v:.1f} %" for s, v in macs.items()))
    print("\n| variant | student accuracy % | pruned accuracy % | pruned − student (points) |")
    print("|---|---:|---:|---:|")
    for kind in ("pytorch", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"):
        a, b = col(f"student/{kind}"), col(f"student_pruned/{kind}")
        d = [y - x for x, y in zip(a, b, strict=True)]
        print(f"| {kind} | {ms(a)} | {ms(b)} | {ms(d)} |")

    print(f"\n| runtime (1 thread) | student p50 ms | pruned p50 ms | latency reduction (mean over {len(args.seeds)} "
          "seeds, min–max) |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for label, *_ in PAIRS:
        a = [lat[s][label][0] for s in args.seeds]
        b = [lat[s][label][1] for s in args.seeds]
        red = [100 * (1 - y / x) for x, y in zip(a, b, strict=True)]
        print(f"| {label} | {statistics.mean(a):.4f} | {statistics.mean(b):.4f} | "
              f"{statistics.mean(red):.1f} % ({min(red):.1f}–{max(red):.1f}) |")  # fmt: skip

    print("\n## QAT int8 vs post-training int8, TFLite, LiteRT interpreter, test split\n")
    print("| model | PTQ int8 accuracy % | QAT int8 accuracy % | QAT − PTQ (points) | QAT ≥ PTQ in seeds |")
    print("|---|---:|---:|---:|---:|")
    qat_ok = {}
    for label, ptq, qat in QAT_PAIRS:
        a, b = col(ptq), col(qat)
        d = [y - x for x, y in zip(a, b, strict=True)]
        qat_ok[label] = statistics.mean(b) >= statistics.mean(a)
        print(f"| {label} | {ms(a)} | {ms(b)} | {ms(d)} | {sum(x >= 0 for x in d)}/{len(d)} |")
    print("\n| runtime (1 thread), pruned student | PTQ int8 p50 ms | QAT int8 p50 ms |")
    print("|---|---:|---:|")
    for label, *_ in QAT_LATENCY:
        a = [lat[s][f"QAT {label}"][0] for s in args.seeds]
        b = [lat[s][f"QAT {label}"][1] for s in args.seeds]
        print(f"| {label} | {statistics.mean(a):.4f} | {statistics.mean(b):.4f} |")
    onnx = [(f"{m}/onnx-int8", col(f"{m}/onnx-int8")) for m in ("student", "student_qat", "student_pruned",
                                                                 "student_pruned_qat")]  # fmt: skip
    print("\nONNX int8 (onnxruntime): " + "; ".join(f"{n} {ms(v)} %" for n, v in onnx))

    print(f"\n## Precision found in each file (seed {first})\n")
    print("| variant | report | found in the file | evidence |")
    print("|---|---|---|---|")
    print("\n".join(precision_lines(base / f"seed{first}", r0)))
    print(f"\n## QAT ranges in the int8 files (seed {first})\n")
    print("| file | learned activation scales found | learned weight scales found | max rel. diff | foreign scales |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(qat_scale_lines(base / f"seed{first}")))

    if not args.no_sparse:
        sparse_check(base / f"seed{first}", args.rounds, args.runs, args.warmup)

    acc_loss = statistics.mean(col("student/pytorch")) - statistics.mean(col("student_pruned/pytorch"))
    reductions = {label: statistics.mean(1 - lat[s][label][1] / lat[s][label][0] for s in args.seeds)
                  for label, *_ in PAIRS}  # fmt: skip
    checks = [
        ("pruned student: MACs removed ≥ 40 % (every seed)", min(macs.values()) >= 0.40),
        (f"pruned student: accuracy loss ≤ 1 point (mean, {acc_loss:+.2f})", acc_loss <= 1.0),
        (
            "pruned student faster in LiteRT (fp32 and int8)",
            reductions["LiteRT fp32"] > 0 and reductions["LiteRT int8 (PTQ)"] > 0,
        ),
        (
            "pruned student faster in onnxruntime (fp32 and int8)",
            reductions["onnxruntime fp32"] > 0 and reductions["onnxruntime int8 (PTQ QDQ)"] > 0,
        ),
        *(
            (f"{label}: QAT int8 TFLite accuracy ≥ post-training int8 (mean over seeds)", ok)
            for label, ok in qat_ok.items()
        ),
    ]
    print("\n## Checks\n")
    for name, ok in checks:
        print(f"{'✅' if ok else '❌'} {name}")
    print(f"\nrun directories: {base}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Real architectures through every stage: which ones export, convert, quantize, prune and QAT-fine-tune, and where not,
which op stopped them.

    EDGEKD_TORCHVISION_WITHOUT_OPS=1 python benchmarks/arch_matrix.py            # 224x224, every architecture
    python benchmarks/arch_matrix.py --size 96 --arch timm:resnet18              # one row

Each architecture is the student of a real pipeline run by ``edgekd run`` (one process per pipeline, so a converter
that crashes or exits takes only its own cell): the synthetic photo set (``edgekd synth-photos``, 7 images per class)
at ``--size``, a small zoo teacher trained 1 epoch, the student distilled 1 epoch, then, each in its own pipeline
sharing those cached stages, export_onnx (fp32 + static int8 QDQ, checked by onnxruntime), convert_tflite through
litert-torch and through onnx2tf (fp32 + full-integer int8, checked by the LiteRT interpreter), prune (structured,
Torch-Pruning, 30 % of MACs) and qat (then its TFLite int8 file, from the learned ranges). Every file is checked
by the stage that writes it (fp32: max |logit difference|
vs PyTorch on the test images, shown; int8: full-integer int8 in the file, run by the runtime). The models are barely
trained, so int8 agreement here would say nothing: this is a table of what converts, not of accuracy
(benchmarks/real_models.py measures accuracy).

Prints a markdown table and writes it, with every cell's message, to ``--out``/matrix.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ARCHS = [
    "timm:mobilenetv3_small_100",
    "timm:efficientnet_lite0",
    "timm:resnet18",
    "timm:deit_tiny_patch16_224",
    "torchvision:mobilenet_v3_small",
]
CELLS = ["onnx", "litert-torch", "onnx2tf", "prune", "qat"]


def _student(arch: str, size: int) -> dict:
    library, _, name = arch.partition(":")
    spec: dict = {library: name}
    if "deit" in name or "vit" in name:
        spec["kwargs"] = {"img_size": size}
    return spec


def _doc(arch: str, photos: Path, size: int, extra: list[dict]) -> dict:
    return {
        "name": "matrix",
        "seed": 0,
        "data": {"source": "folder", "path": str(photos), "image_size": size, "augment": {"enabled": False}},
        "stages": [
            {"stage": "teacher", "model": {"name": "tiny_cnn"}, "train": {"epochs": 1, "batch_size": 16}},
            {
                "stage": "distill",
                "student": _student(arch, size),
                "baseline": False,
                "train": {"epochs": 1, "batch_size": 16},
            },
            *extra,
        ],
    }


def _extra(cell: str) -> list[dict]:
    agree = {"min_int8_agreement": 0.0}
    return {
        "onnx": [{"stage": "export_onnx", "models": ["student"], **agree}],
        "litert-torch": [
            {
                "stage": "convert_tflite",
                "name": "tflite_litert",
                "converter": "litert-torch",
                "precisions": ["fp32", "int8"],
                "tolerance": 1e-3,
                **agree,
            }
        ],
        "onnx2tf": [
            {"stage": "export_onnx", "models": ["student"], "int8": False},
            {
                "stage": "convert_tflite",
                "name": "tflite_onnx2tf",
                "converter": "onnx2tf",
                "precisions": ["fp32", "int8"],
                "tolerance": 1e-3,
                **agree,
            },
        ],
        "prune": [{"stage": "prune", "macs_reduction": 0.3, "steps": 1, "finetune": {"epochs": 1, "batch_size": 16}}],
        "qat": [
            {"stage": "qat", "train": {"epochs": 1, "batch_size": 16}},
            {"stage": "convert_tflite", "name": "tflite_qat", "model": "student_qat", "precisions": ["int8"], **agree},
        ],
    }[cell]


def _manifest_outputs(run: Path, stage_id: str) -> tuple[list[dict], list[str]]:
    for folder in sorted(run.glob(f"*_{stage_id}")):
        m = json.loads((folder / "manifest.json").read_text())
        return m.get("outputs", []), m.get("notes", [])
    return [], []


def _summary(cell: str, run: Path) -> dict:
    """What the cell's stage measured, read back from its manifest."""
    sid = {"onnx": "export_onnx", "litert-torch": "tflite_litert", "onnx2tf": "tflite_onnx2tf", "qat": "tflite_qat"}
    sid = sid.get(cell, cell)
    outputs, notes = _manifest_outputs(run, sid)
    out: dict = {"notes": notes}
    for o in outputs:
        meta, name = o.get("meta", {}), o.get("name", "")
        if name.startswith("failures/"):
            out["failures"] = [f["precision"] + ": " + f["error"] for f in meta.get("failures", [])]
            continue
        prec = meta.get("requested_precision") or meta.get("precision")
        if prec in ("fp32", "int8"):
            out[prec] = {"diff": meta.get("max_abs_diff_vs_torch"), "precision_in_file": meta.get("precision")}
    return out


def run_cell(arch: str, cell: str, photos: Path, size: int, runs: Path, timeout: int) -> dict:
    run = runs / arch.replace(":", "-")
    runs.mkdir(parents=True, exist_ok=True)
    yml = run.parent / f"{run.name}-{cell}.yaml"
    yml.write_text(yaml.safe_dump(_doc(arch, photos, size, _extra(cell)), sort_keys=False))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgekd", "run", str(yml), "-o", str(run)],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, "EDGEKD_QUIET": "1"},
        )  # fmt: skip
        ok, err = proc.returncode == 0, ""
        if not ok:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            err = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "failed")
    except subprocess.TimeoutExpired:
        ok, err = False, f"timed out after {timeout} s"
    res = {"ok": ok, "error": err.strip()[:400], "seconds": round(time.perf_counter() - t0, 1)}
    if ok:
        res.update(_summary(cell, run))
    return res


_WHERE = re.compile(r"^(error: )?(\S+\.yaml:\d+: stages\[\d+\] \(\w+\): (model: )?|stage '\w+': )")


def _fmt(cell: str, r: dict) -> str:
    if not r["ok"]:
        return "failed: " + _WHERE.sub("", r["error"])[:170]
    if cell == "prune":
        return "ok"
    if cell == "qat":
        return "ok; TFLite int8 from the learned ranges" if r.get("int8") else "ok; no int8 file"
    parts = []
    for prec in ("fp32", "int8"):
        v = r.get(prec)
        if v is None:
            fail = next((f for f in r.get("failures", []) if f.startswith(prec)), None)
            parts.append(f"{prec} failed: {fail.split(': ', 1)[1][:140]}" if fail else f"{prec} —")
        elif prec == "fp32":
            parts.append(f"fp32 ok (Δ {v['diff']:.1e})" if v.get("diff") is not None else "fp32 ok")
        else:
            parts.append("int8 ok")
    return "; ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--arch", action="append", help="timm:NAME or torchvision:NAME (default: the five of the table)")
    ap.add_argument("--cell", action="append", choices=CELLS, help="default: every cell")
    ap.add_argument("--out", type=Path, default=Path("runs/arch_matrix"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per pipeline")
    args = ap.parse_args()
    os.environ.setdefault("EDGEKD_TORCHVISION_WITHOUT_OPS", "1")  # the documented workaround, where builds mismatch
    args.out.mkdir(parents=True, exist_ok=True)
    photos = args.out / f"photos-{args.size}"
    if not photos.exists():
        from edgekd.data.synthetic import make_photos

        make_photos(photos, per_class=7, size=args.size, seed=0)
    results: dict = {}
    for arch in args.arch or ARCHS:
        results[arch] = {}
        for cell in args.cell or CELLS:
            r = run_cell(arch, cell, photos, args.size, args.out / f"runs-{args.size}", args.timeout)
            results[arch][cell] = r
            print(f"{arch:32} {cell:13} {r['seconds']:7.1f} s  {_fmt(cell, r)}", flush=True)
    cells = args.cell or CELLS
    lines = [
        f"| architecture ({args.size}×{args.size}) | " + " | ".join(cells) + " |",
        "|---" * (len(cells) + 1) + "|",
    ]
    for arch, row in results.items():
        lines.append(f"| `{arch}` | " + " | ".join(_fmt(c, row[c]).replace("|", "/") for c in cells) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / f"matrix-{args.size}.md").write_text(table + "\n")
    (args.out / f"matrix-{args.size}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``edgekd bench MODEL --device PROFILE``: measure one exported model on one or more devices, no pipeline needed.

    edgekd bench runs/x/04_convert_tflite/student-int8.tflite --device raspberry-pi-4
    edgekd bench model.onnx --meta model.json --data eval.npz --device local --device my-board.yaml -o bench-out

A model from an edgekd run directory brings its metadata (the stage manifest) and test split (``*_data/dataset.npz``);
anything else needs ``--meta`` and ``--data``. Several ``--device`` run in parallel and land in one table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

FORMATS = {".tflite": ("tflite", "litert"), ".onnx": ("onnx", "onnxruntime"), ".pt2": ("pytorch", "torch")}


def run_bench(
    model: Path,
    devices: list[str],
    meta: Path | None = None,
    data: Path | None = None,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    eval_limit: int | None = None,
) -> dict:
    """Measure ``model`` on every device; returns a report dict (the schema of report.json) with one row per device."""
    from edgekd import __version__
    from edgekd.bench_inputs import find_dataset, find_meta, read_meta, write_eval_npz, write_meta
    from edgekd.devices import load_profile
    from edgekd.errors import ConfigError
    from edgekd.report.fmt import failure_notes
    from edgekd.transports.measure import Settings, Variant, measure_devices

    if not model.is_file():
        raise ConfigError(f"model file '{model}' does not exist")
    if model.suffix.lower() not in FORMATS:
        raise ConfigError(f"{model.name}: unknown model format, expected one of {', '.join(FORMATS)}")
    if len(set(devices)) != len(devices):
        raise ConfigError(f"--device lists a profile twice: {', '.join(devices)}")
    profiles = [load_profile(d) for d in devices]  # every profile checked before anything runs
    meta_doc = read_meta(meta) if meta else find_meta(model)
    fmt, runtime = FORMATS[model.suffix.lower()]
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        eval_path = write_eval_npz(data or find_dataset(model), Path(tmp) / "eval.npz")
        meta_path = write_meta(meta_doc, Path(tmp) / f"{model.stem}.meta.json")
        row = {"role": meta_doc.get("role", "student"), "format": fmt, "precision": meta_doc.get("precision"),
               "runtime": runtime, "path": str(model), "size_bytes": model.stat().st_size,
               "params": meta_doc.get("params"), "macs": meta_doc.get("macs")}  # fmt: skip
        variant = Variant(model.name, model, meta_path, runtime, row)
        settings = Settings(threads or 1, warmup, runs, eval_limit, force_threads=threads is not None)
        results = measure_devices(profiles, [variant], eval_path, settings)
    rows = [r for res in results for r in res.rows]
    used = sorted({r["threads"] for r in rows if r.get("threads")})
    local = next((res.facts for res, p in zip(results, profiles, strict=True) if p.transport == "local"), None)
    return {
        "pipeline": f"bench {model.name}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edgekd_version": __version__,
        "host": local or (results[0].facts if len(results) == 1 else None) or {},
        "threads": used[0] if len(used) == 1 else ", ".join(map(str, used)) or threads,
        "variants": rows,
        "devices": {res.device: {"profile": res.profile, "facts": res.facts} for res in results},
        "checks": [],
        "notes": failure_notes(rows) + [n for res in results for n in res.notes],
        "stages": [],
    }


def bench(
    model: Annotated[Path, typer.Argument(help="Exported model: .tflite, .onnx or .pt2.")],
    device: Annotated[
        list[str] | None, typer.Option("--device", "-d", help="Device profile: a name in devices/ or a YAML path.")
    ] = None,
    meta: Annotated[Path | None, typer.Option(help="Model metadata JSON (default: from the run directory).")] = None,
    data: Annotated[Path | None, typer.Option(help="Eval .npz (x N,C,H,W in [0,1], y) or an edgekd dataset.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads (default: the profile's, else 1).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs.")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up runs.")] = 10,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate accuracy on the first N samples.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write report.json/.md/.html and plots here.")] = None,
) -> None:
    """Benchmark one model on one or more devices (local, ssh, adb): latency, memory, accuracy, as measured there."""
    from edgekd.cli import _guard
    from edgekd.console import console
    from edgekd.report import results_table
    from edgekd.report.fmt import failure_notes

    report = _guard(run_bench, model, device or ["local"], meta, data, threads, runs, warmup, eval_limit)
    console.print(results_table(report))
    errors = failure_notes(report["variants"])
    for note in report["notes"]:
        kind = "[bold red]error:[/]" if note in errors else "[yellow]note:[/]"
        console.print(f"{kind} {note}", markup=True, highlight=False, soft_wrap=True)
    if out is not None:
        from edgekd.report import write_report

        console.print(f"report: {_guard(write_report, report, out)['markdown']}")
    if any(r.get("status") != "ok" for r in report["variants"]):
        raise typer.Exit(1)

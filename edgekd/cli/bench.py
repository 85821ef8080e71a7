"""``edgekd bench MODEL --device PROFILE``: measure one exported model file, from anywhere, on one or more devices.

    edgekd bench student-int8.tflite                          # latency, size, memory: the file's own metadata
    edgekd bench student-int8.tflite --data digits            # + accuracy on the bundled digits test split
    edgekd bench runs/x/04_convert_tflite/student-int8.tflite --device raspberry-pi-4
    edgekd bench model.onnx --meta model.json --data eval.npz --device local --device my-board.yaml -o bench-out

Metadata (input shape, layout, normalisation, labels): ``--meta`` if given, else the run folder's stage manifest next
to the file (or a ``<stem>.meta.json``), else the metadata edgekd embedded in the .onnx / .tflite itself. A file with
none (a plain ``torch.onnx.export``) is timed on random inputs shaped like its own input tensor, with a note.

Accuracy needs data: ``--data digits|FILE.npz|DIR`` (see ``eval_data`` in edgekd/edge/bench_inputs.py); a model inside a
run directory defaults to the run's test split. Without data the row is latency, size and memory only (as TFLite's
``benchmark_model``), its accuracy cells empty, and a note says how to add it. Several ``--device`` run in parallel
and land in one table; on every transport a latency-only run ships no eval file.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from edgekd.formats.registry import FILE_FORMATS, by_suffix

DATA_HELP = (
    "Evaluation data for accuracy. 'digits': the bundled scikit-learn digits, the test split a pipeline with the "
    "default data block makes (split_seed 0, test_fraction 0.2: 359 images), at the model's input size. FILE.npz: "
    "x (N,C,H,W in [0,1]) and y, or an edgekd dataset.npz (its test split). DIR: a run directory (its test split) "
    "or an image folder root/<class>/<image>. Default: the run's test split for a model inside a run directory, "
    "else none: latency, size and memory only."
)


def run_bench(
    model: Path,
    devices: list[str],
    meta: Path | None = None,
    data: str | None = None,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    eval_limit: int | None = None,
) -> dict:
    """Measure ``model`` on every device; returns a report dict (the schema of report.json) with one row per device."""
    from edgekd import __version__
    from edgekd.core.errors import ConfigError
    from edgekd.edge.bench_inputs import locate_meta, meta_from_input, read_meta, write_meta
    from edgekd.edge.profiles import load_profile
    from edgekd.edge.transports.measure import Settings, Variant, measure_devices
    from edgekd.report.fmt import failure_notes
    from edgekd.stages.report import versions

    if not model.is_file():
        raise ConfigError(f"model file '{model}' does not exist")
    file_format = by_suffix(model.suffix)
    if file_format is None:
        known = ", ".join(f.suffix for f in FILE_FORMATS.values())
        raise ConfigError(f"{model.name}: unknown model format, expected one of {known}")
    if len(set(devices)) != len(devices):
        raise ConfigError(f"--device lists a profile twice: {', '.join(devices)}")
    profiles = [load_profile(d) for d in devices]  # every profile checked before anything runs
    meta_doc = read_meta(meta) if meta else locate_meta(model)[0]
    notes, described = [], meta_doc is not None
    if meta_doc is None:
        if data is not None:
            raise ConfigError(
                f"--data needs {model.name}'s normalisation (mean, std) and label order, and the file carries no "
                "edgekd metadata: pass --meta META.json as well"
            )
        meta_doc, note = meta_from_input(model)
        notes.append(note)
    fmt, runtime = file_format.label, file_format.runtime
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        eval_path, what = _eval_file(model, meta_doc, data, described, Path(tmp) / "eval.npz")
        notes.append(what)
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
        "warmup": warmup,
        "runs": runs,
        "n_test": next((r.get("n_eval") for r in rows if r.get("n_eval")), None),
        "versions": versions(),
        "checks": [],
        # what was measured (and on what data) first, then failures and device notes, as before
        "notes": notes + failure_notes(rows) + [n for res in results for n in res.notes],
        "stages": [],
    }


def _eval_file(model: Path, meta: dict, data: str | None, described: bool, out: Path) -> tuple[Path | None, str]:
    """The eval file (None: latency only) and the note that says what accuracy was measured on, or how to get it."""
    from edgekd.edge.bench_inputs import eval_data, run_dataset, write_eval_npz

    if data is not None:
        return eval_data(data, model, meta, out)
    found = run_dataset(model)  # a run's own output: its test split, as the run's benchmark stage measured
    if found is not None:
        return write_eval_npz(found, out), f"accuracy on the run's test split ({found})"
    how = "add --data digits, --data EVAL.npz or --data FOLDER"
    if not described:  # no metadata: the normalisation and labels must come with --meta
        how += ", with --meta META.json (mean, std, labels) for this file"
    return None, f"accuracy not measured (no evaluation data): {how}"


def bench(
    model: Annotated[Path, typer.Argument(help="Exported model: .tflite, .onnx or .pt2.")],
    device: Annotated[
        list[str] | None, typer.Option("--device", "-d", help="Device profile: a name in devices/ or a YAML path.")
    ] = None,
    meta: Annotated[
        Path | None, typer.Option(help="Metadata JSON (default: the run folder's manifest, else the file's own).")
    ] = None,
    data: Annotated[str | None, typer.Option(metavar="digits|FILE.npz|DIR", help=DATA_HELP)] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads (default: the profile's, else 1).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs.")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up runs.")] = 10,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate accuracy on the first N samples.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write report.json/.md/.html and plots here.")] = None,
) -> None:
    """Benchmark a model file on devices (local, ssh, adb): latency, size and memory; accuracy with --data."""
    from edgekd.cli._common import guard
    from edgekd.core.console import console
    from edgekd.report import results_table
    from edgekd.report.fmt import failure_notes

    report = guard(run_bench, model, device or ["local"], meta, data, threads, runs, warmup, eval_limit)
    console.print(results_table(report))
    errors = failure_notes(report["variants"])
    for note in report["notes"]:
        kind = "[bold red]error:[/]" if note in errors else "[yellow]note:[/]"
        console.print(f"{kind} {note}", markup=True, highlight=False, soft_wrap=True)
    if out is not None:
        from edgekd.report import write_report

        console.print(f"report: {guard(write_report, report, out)['markdown']}")
    if any(r.get("status") != "ok" for r in report["variants"]):
        raise typer.Exit(1)

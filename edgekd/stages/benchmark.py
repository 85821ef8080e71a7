"""benchmark: measure the teacher and every student variant with the device agent (here: the local transport).

Every number comes from ``devices/agent.py``: accuracy and teacher agreement on the test split, latency at batch 1
(warm-up, then timed runs), throughput, load time and peak memory of the process running the model.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from pydantic import Field

from edgekd.artifacts import MODEL_KINDS, Artifact, Benchmark
from edgekd.config import StageConfig
from edgekd.console import progress
from edgekd.data import SplitData
from edgekd.fsutil import atomic_path, atomic_write_bytes, atomic_write_json
from edgekd.models.io import load_torch_model
from edgekd.stages.base import register_stage, require
from edgekd.transports.local import run_agent

RUNTIME_OF = {"torch": "torch", "onnx": "onnxruntime", "tflite": "litert"}
FORMAT_OF = {"torch": "pytorch", "onnx": "onnx", "tflite": "tflite"}


class BenchmarkConfig(StageConfig):
    threads: int = Field(1, ge=1, le=256)
    warmup: int = Field(20, ge=0, le=100_000)
    runs: int = Field(200, ge=1, le=1_000_000)
    eval_limit: int | None = Field(None, ge=1, description="evaluate accuracy on at most this many test images")
    models: list[str] | None = Field(None, description="artifact names to measure (default: every model)")


def _inputs(cfg: BenchmarkConfig, store) -> list[str]:
    names = cfg.models or [n for n, a in store.items() if a.kind in MODEL_KINDS]
    names += [n for n in store if n.startswith("failures/")]
    return require(store, cfg.id, "dataset", "teacher", *dict.fromkeys(names))


def export_pt2(art: Artifact, path: Path) -> Path:
    """Save a torch model as a torch.export program so the agent can run it without edgekd's model code."""
    import torch

    model = load_torch_model(art)
    buf = io.BytesIO()  # a buffer: torch.export.save warns about (and names entries after) non-.pt2 temp names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.export.export(model, (torch.zeros(tuple(art.meta["input_shape"])),))
        torch.export.save(prog, buf)
    return atomic_write_bytes(path, buf.getvalue())


def variant_name(art: Artifact) -> str:
    if art.kind == "torch":
        return f"{art.name}/pytorch"
    return art.name.split("/", 1)[1].replace("-", f"/{art.kind}-", 1)


def base_row(art: Artifact, size_path: Path) -> dict:
    m = art.meta
    return {"name": variant_name(art), "artifact": art.name, "role": m.get("role", "student"),
            "format": FORMAT_OF[art.kind], "precision": m.get("precision", "fp32"), "runtime": RUNTIME_OF[art.kind],
            "path": str(size_path), "size_bytes": art.path.stat().st_size, "params": m.get("params"),
            "macs": m.get("macs"), "source": m.get("source", art.name),
            "max_abs_diff_vs_torch": m.get("max_abs_diff_vs_torch"), "agreement_vs_fp32": m.get("agreement_vs_fp32")}


@register_stage("benchmark", BenchmarkConfig, _inputs, ("onnxruntime", "ai-edge-litert"))
def run_benchmark(cfg: BenchmarkConfig, ctx, inputs) -> list[Benchmark]:
    """Run the agent on every model; a variant that fails becomes a failed row and the others still run."""
    data = SplitData.load(inputs["dataset"].path)
    x, y = data.arrays["test"]
    eval_path = ctx.out_dir / "eval.npz"
    models = [a for a in inputs.values() if a.kind in MODEL_KINDS]
    models.sort(key=lambda a: (a.name != "teacher", MODEL_KINDS.index(a.kind), a.name))
    rows: list[dict] = []
    teacher_pred = None
    host = None
    with progress() as bar:
        task = bar.add_task("benchmark", total=len(models), info="")
        for art in models:
            bar.update(task, info=art.name)
            run_path = art.path
            if art.kind == "torch":
                run_path = export_pt2(art, ctx.out_dir / f"{art.name}.pt2")
            meta_path = atomic_write_json(ctx.out_dir / f"{variant_name(art).replace('/', '_')}.meta.json",
                                          {k: v for k, v in art.meta.items() if k != "history"})
            payload = {"x": x, "y": y} if teacher_pred is None else {"x": x, "y": y, "teacher_pred": teacher_pred}
            with atomic_path(eval_path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **payload)
            preds = ctx.out_dir / "teacher_pred.npy" if art.name == "teacher" else None
            res = run_agent(run_path, meta_path, eval_path, cfg.threads, cfg.warmup, cfg.runs, preds, cfg.eval_limit)
            row = base_row(art, run_path)
            if art.name == "teacher" and res.get("status") == "ok":
                teacher_pred = np.load(preds)
                res["teacher_agreement"] = 1.0
            row.update({k: res.get(k) for k in ("accuracy", "teacher_agreement", "latency_ms", "throughput_ips",
                                                 "peak_rss_mb", "load_time_ms", "runtime_version", "threads")})
            row["status"] = res.get("status", "failed")
            row["error"] = res.get("error")
            host = res.get("device") or host
            rows.append(row)
            bar.advance(task)
    for art in inputs.values():
        for fail in art.meta.get("failures", []):
            rows.append({"name": fail["name"].split("/", 1)[1].replace("-", "/tflite-", 1), "artifact": fail["name"],
                         "role": "student", "format": fail["format"], "precision": fail["precision"],
                         "status": "failed", "error": fail["error"]})
    eval_path.unlink(missing_ok=True)
    summary = {"threads": cfg.threads, "runs": cfg.runs, "warmup": cfg.warmup, "host": host, "n_test": int(len(y)),
               "rows": rows}
    out = atomic_write_json(ctx.out_dir / "benchmark.json", summary)
    return [Benchmark("benchmark", out, {"threads": cfg.threads, "n_rows": len(rows)})]

"""text_benchmark: every text model variant through the device agent, then its embeddings judged against the teacher.

The agent (devices/agent.py) tokenises the held-out sentences itself (devices/wordpiece.py, from the vocabulary in
the model's metadata), times batch-1 calls at the fixed sequence length, measures memory, and returns the
embeddings; here they are compared with the teacher's PyTorch embeddings of the same sentences (mean cosine,
Spearman of pairwise similarities, top-10 retrieval overlap, linear-probe accuracy). Speed-ups are read against
the teacher's ONNX fp32 file measured on the same device with the same threads.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
from pydantic import Field

from edgekd.core.artifacts import Artifact, Benchmark
from edgekd.core.config import StageConfig
from edgekd.core.console import progress
from edgekd.core.fsutil import atomic_path, atomic_write_bytes, atomic_write_json
from edgekd.edge.profiles import load_profile
from edgekd.edge.transports.measure import Settings, Variant, measure_device
from edgekd.formats.metadata import read_metadata
from edgekd.formats.registry import FILE_FORMATS, MODEL_KINDS
from edgekd.stages.base import register_stage, require
from edgekd.text.io import load_array, load_text_model
from edgekd.text.metrics import embedding_metrics
from edgekd.text.teacher import read_vocab


class TextBenchmarkConfig(StageConfig):
    threads: int = Field(1, ge=1, le=256, description="threads for every runtime")
    warmup: int = Field(10, ge=0, le=100_000, description="untimed runs before timing")
    runs: int = Field(100, ge=1, le=1_000_000, description="timed runs at batch 1")
    eval_limit: int | None = Field(None, ge=20, description="judge embeddings on at most this many test sentences")
    models: list[str] | None = Field(None, description="artifact names (default: every text model)")
    devices: list[str] = Field(["local"], min_length=1, description="device profiles: names in devices/ or paths")
    k: int = Field(10, ge=1, le=1000, description="neighbours compared for retrieval agreement")


def _is_text_model(a: Artifact) -> bool:
    return a.kind in MODEL_KINDS and a.meta.get("task") == "text-embedding"


def _inputs(cfg: TextBenchmarkConfig, store) -> list[str]:
    names = cfg.models or [n for n, a in store.items() if _is_text_model(a)]
    names += [n for n in store if n.startswith("failures/")]
    return require(store, cfg.id, "text_tokens", "text_teacher", *dict.fromkeys(names))


def _export_pt2(art: Artifact, path: Path) -> Path:
    import torch

    from edgekd.text.models import export_inputs

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(load_text_model(art), export_inputs(art.meta["max_length"])), buf)
    return atomic_write_bytes(path, buf.getvalue())


def _variant(art: Artifact, out: Path, vocab: list[str]) -> Variant:
    if art.kind == "torch":
        model = _export_pt2(art, out / f"{art.name}.pt2")
        md = {**{k: v for k, v in art.meta.items() if k != "history"}, "vocab": vocab}
        name = f"{art.name}/pytorch"
    else:
        model, md = art.path, read_metadata(art.path) or {}
        name = art.name.split("/", 1)[1].replace("-", f"/{art.kind}-", 1)
    meta = atomic_write_json(out / f"{name.replace('/', '_')}.meta.json", md)
    row = {
        "artifact": art.name,
        "role": art.meta.get("role", "student"),
        "format": art.kind,
        "precision": art.meta.get("precision", "fp32"),
        "size_bytes": model.stat().st_size,
        "params": art.meta.get("params"),
        "trained": art.meta.get("trained", art.meta.get("role") == "teacher"),
        "precision_detail": art.meta.get("precision_detail"),
    }
    return Variant(name, model, meta, FILE_FORMATS[art.kind].runtime, row)


@register_stage("text_benchmark", TextBenchmarkConfig, _inputs, ("onnxruntime", "ai-edge-litert"))
def run_text_benchmark(cfg: TextBenchmarkConfig, ctx, inputs) -> list[Benchmark]:
    """Measure each variant on each device; judge its embeddings; write benchmark.json and a Markdown table."""
    tokens = inputs["text_tokens"]
    texts = load_array(tokens, "text_test")
    n = len(texts) if cfg.eval_limit is None else min(cfg.eval_limit, len(texts))
    teacher = load_array(tokens, "teacher_test")[:n]
    labels = load_array(tokens, "label_test")[:n]
    vocab = read_vocab(inputs["text_teacher"].meta["folder"])
    eval_path = ctx.out_dir / "eval.npz"
    with atomic_path(eval_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, text=np.asarray(texts[:n], dtype=str))
    arts = sorted(
        (a for a in inputs.values() if _is_text_model(a)),
        key=lambda a: (a.meta.get("role") != "teacher", MODEL_KINDS.index(a.kind), a.name),
    )
    variants = [_variant(a, ctx.out_dir, vocab) for a in arts]
    settings = Settings(cfg.threads, cfg.warmup, cfg.runs, n, force_threads=True)
    rows: list[dict] = []
    with progress() as bar:
        task = bar.add_task("text benchmark", total=len(variants) * len(cfg.devices), info="")
        for ref in cfg.devices:
            profile = load_profile(ref)
            for v in variants:
                v.preds_out = ctx.out_dir / f"{profile.name}_{v.name.replace('/', '_')}.emb.npy"
            res = measure_device(
                profile,
                variants,
                eval_path,
                settings,
                lambda r: bar.update(task, advance=1, info=f"{r['device']}: {r['name']}"),
            )
            rows += res.rows
            for row, v in zip(res.rows, variants, strict=False):
                if row["status"] == "ok" and v.preds_out is not None and v.preds_out.is_file():
                    emb = np.load(v.preds_out)
                    row.update(embedding_metrics(emb, teacher, labels, cfg.k))
                    v.preds_out.unlink()
    eval_path.unlink(missing_ok=True)
    _speedups(rows)
    rows += [
        {"name": f["name"], "format": f["format"], "precision": f["precision"], "status": "failed", "error": f["error"]}
        for a in inputs.values()
        for f in a.meta.get("failures", [])
    ]
    teacher_probe = embedding_metrics(teacher, teacher, labels, cfg.k).get("probe_accuracy")
    summary = {
        "threads": cfg.threads,
        "runs": cfg.runs,
        "warmup": cfg.warmup,
        "n_eval": n,
        "max_length": tokens.meta["max_length"],
        "teacher_params": tokens.meta["teacher_params"],
        "teacher_probe_accuracy": teacher_probe,
        "rows": rows,
    }
    out = atomic_write_json(ctx.out_dir / "benchmark.json", summary)
    (ctx.out_dir / "report.md").write_text(markdown_table(summary), encoding="utf-8")
    ctx.note(f"text benchmark: {len(rows)} rows on {', '.join(cfg.devices)}; teacher probe accuracy {teacher_probe}")
    return [Benchmark("text_benchmark", out, {"threads": cfg.threads, "n_rows": len(rows), "devices": cfg.devices})]


def _speedups(rows: list[dict]) -> None:
    """latency of the teacher's ONNX fp32 file on the same device / this row's latency (p50)."""
    ref = {
        r["device"]: r["latency_ms"]["p50"]
        for r in rows
        if r.get("status") == "ok" and r.get("role") == "teacher" and r.get("format") == "onnx"
    }
    for r in rows:
        if r.get("status") == "ok" and r.get("device") in ref and r.get("latency_ms"):
            r["speedup_vs_teacher_onnx"] = round(ref[r["device"]] / r["latency_ms"]["p50"], 2)


def markdown_table(summary: dict) -> str:
    head = (
        "| variant | device | params | size | precision (in file) | p50 ms | × teacher | peak RSS MB | cosine | "
        "Spearman | top-10 | probe |\n|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in summary["rows"]:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['name']} | {r.get('device') or '-'} | | | {r.get('precision')} | failed: "
                f"{r.get('error', '')[:80]} | | | | | | |"
            )
            continue

        def f(key: str, fmt: str = "{:.3f}", row: dict = r) -> str:
            v = row.get(key)
            return "-" if v is None else fmt.format(v)

        lines.append(
            f"| {r['name']} | {r['device']} | {f('params', '{:,}')} | {r['size_bytes'] / 1e6:.2f} MB | "
            f"{r.get('precision')} | {r['latency_ms']['p50']:.2f} | {f('speedup_vs_teacher_onnx', '{:.1f}')} | "
            f"{f('peak_rss_mb', '{:.0f}')} | {f('mean_cosine')} | {f('spearman')} | {f('top10_overlap')} | "
            f"{f('probe_accuracy')} |"
        )
    meta = (
        f"\n{summary['n_eval']} held-out sentences, max length {summary['max_length']}, {summary['threads']} "
        f"thread(s); teacher probe accuracy {summary['teacher_probe_accuracy']}\n"
    )
    return head + "\n".join(lines) + "\n" + meta + json.dumps({"teacher_params": summary["teacher_params"]}) + "\n"

"""benchmark: measure the teacher and every student variant with the device agent, on one or more devices.

Every number comes from ``devices/agent.py`` (or, on Android, TFLite's benchmark_model): accuracy and teacher agreement
on the test split, latency at batch 1 (warm-up, then timed runs), throughput, load time and peak memory of the process
running the model. ``devices`` lists device profiles (``devices/*.yaml`` names or paths); they are measured in
parallel and a device that fails gives failed rows without stopping the others. The teacher always runs here first:
its predictions are what every other variant's teacher agreement is measured against.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from pydantic import Field, PrivateAttr, computed_field, field_validator

from edgekd.core.artifacts import Artifact, Benchmark
from edgekd.core.config import TEXT, StageConfig
from edgekd.core.console import progress
from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import atomic_path, atomic_write_bytes, atomic_write_json
from edgekd.core.stage import register_stage, require
from edgekd.data import SplitData
from edgekd.edge.profiles import DeviceProfile, load_profile
from edgekd.edge.transports.measure import DeviceResult, Settings, Variant, measure_device, measure_devices
from edgekd.formats.metadata import read_metadata
from edgekd.formats.registry import FILE_FORMATS, MODEL_KINDS
from edgekd.models.io import load_torch_model
from edgekd.text.io import load_array, load_text_model
from edgekd.text.metrics import embedding_metrics
from edgekd.text.teacher import read_vocab


class BenchmarkConfig(StageConfig):
    threads: int = Field(1, ge=1, le=256, description="threads for every runtime")
    warmup: int = Field(20, ge=0, le=100_000, description="untimed runs before timing")
    runs: int = Field(200, ge=1, le=1_000_000, description="timed runs at batch 1 (latency mean / p50 / p90 / p99)")
    eval_limit: int | None = Field(None, ge=1, description="evaluate accuracy on at most this many test images")
    models: list[str] | None = Field(None, description="artifact names to measure (default: every model)")
    devices: list[str] = Field(["local"], min_length=1, description="device profiles: names in devices/ or paths")
    _profiles: list[DeviceProfile] = PrivateAttr(default_factory=list)

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each device may be listed once")
        for ref in v:
            try:
                load_profile(ref)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @computed_field  # in the cache key: a profile edited (another host, threads) means a new measurement
    @property
    def device_profiles(self) -> list[dict]:
        if not self._profiles:
            self._profiles = [load_profile(ref) for ref in self.devices]
        return [p.model_dump(mode="json") for p in self._profiles]


def _inputs(cfg: BenchmarkConfig, store) -> list[str]:
    names = cfg.models or [n for n, a in store.items() if a.kind in MODEL_KINDS]
    names += [n for n in store if n.startswith("failures/")]
    return require(store, cfg.id, "dataset", "teacher", *dict.fromkeys(names))


def save_program(model, args: tuple, path: Path) -> Path:
    """Save a torch model as a torch.export program so the agent can run it without edgekd's model code."""
    import torch

    buf = io.BytesIO()  # a buffer: torch.export.save warns about (and names entries after) non-.pt2 temp names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, args), buf)
    return atomic_write_bytes(path, buf.getvalue())


def export_pt2(art: Artifact, path: Path) -> Path:
    """An image model's program, traced on a zero batch of its input shape."""
    import torch

    return save_program(load_torch_model(art), (torch.zeros(tuple(art.meta["input_shape"])),), path)


def variant_name(art: Artifact) -> str:
    if art.kind == "torch":
        return f"{art.name}/pytorch"
    return art.name.split("/", 1)[1].replace("-", f"/{art.kind}-", 1)


def base_row(art: Artifact, size_path: Path) -> dict:
    m = art.meta
    return {
        "name": variant_name(art),
        "artifact": art.name,
        "role": m.get("role", "student"),
        "format": FILE_FORMATS[art.kind].label,
        "precision": m.get("precision", "fp32"),
        "runtime": FILE_FORMATS[art.kind].runtime,
        "path": str(size_path),
        "size_bytes": art.path.stat().st_size,
        "params": m.get("params"),
        "macs": m.get("macs"),
        "source": m.get("source", art.name),
        "max_abs_diff_vs_torch": m.get("max_abs_diff_vs_torch"),
        "agreement_vs_fp32": m.get("agreement_vs_fp32"),
    }


def _teacher_device(profiles: list[DeviceProfile]) -> tuple[DeviceProfile, bool]:
    """Where the teacher runs: the first profile on this machine, else a plain local one (rows not reported)."""
    local = next((p for p in profiles if p.transport == "local"), None)
    return (local, True) if local else (load_profile("local"), False)


def _write_eval(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _conversion_failures(inputs) -> list[dict]:
    """Variants an earlier stage failed to produce: a failed row each, measured on no device."""
    rows = []
    for art in inputs.values():
        for fail in art.meta.get("failures", []):
            rows.append(
                {
                    "name": fail["name"].split("/", 1)[1].replace("-", "/tflite-", 1),
                    "artifact": fail["name"],
                    "role": "student",
                    "format": fail["format"],
                    "precision": fail["precision"],
                    "device": None,
                    "status": "failed",
                    "error": fail["error"],
                }
            )
    return rows


@register_stage("benchmark", BenchmarkConfig, _inputs, ("onnxruntime", "ai-edge-litert"))
def run_benchmark(cfg: BenchmarkConfig, ctx, inputs) -> list[Benchmark]:
    """Run the agent on every model and device; a variant or device that fails becomes failed rows, the rest run."""
    data = SplitData.load(inputs["dataset"].path)
    x, y = data.arrays["test"]
    eval_path = ctx.out_dir / "eval.npz"
    profiles = [load_profile(ref) for ref in cfg.devices]
    models = [a for a in inputs.values() if a.kind in MODEL_KINDS]
    models.sort(key=lambda a: (a.name != "teacher", MODEL_KINDS.index(a.kind), a.name))
    variants = []
    for art in models:
        run_path = export_pt2(art, ctx.out_dir / f"{art.name}.pt2") if art.kind == "torch" else art.path
        meta = {k: v for k, v in art.meta.items() if k != "history"}
        meta_path = atomic_write_json(ctx.out_dir / f"{variant_name(art).replace('/', '_')}.meta.json", meta)
        variants.append(
            Variant(variant_name(art), run_path, meta_path, FILE_FORMATS[art.kind].runtime, base_row(art, run_path))
        )
    teacher = next((v for v, a in zip(variants, models, strict=True) if a.name == "teacher"), None)
    others = [v for v in variants if v is not teacher]
    settings = Settings(cfg.threads, cfg.warmup, cfg.runs, cfg.eval_limit)
    results: dict[str, DeviceResult] = {}
    with progress() as bar:
        task = bar.add_task("benchmark", total=len(variants) * len(profiles), info="")

        def on_row(row: dict) -> None:
            bar.update(task, advance=1, info=f"{row['device']}: {row['name']}")

        _write_eval(eval_path, x=x, y=y)
        if teacher is not None:  # first and alone: every other variant's teacher agreement needs its predictions
            teacher.preds_out = ctx.out_dir / "teacher_pred.npy"
            device, reported = _teacher_device(profiles)
            once = settings if reported else Settings(cfg.threads, 0, 1, cfg.eval_limit)
            res = measure_device(device, [teacher], eval_path, once, on_row if reported else None)
            if res.rows and res.rows[0]["status"] == "ok":
                res.rows[0]["teacher_agreement"] = 1.0
                _write_eval(eval_path, x=x, y=y, teacher_pred=np.load(teacher.preds_out))
            if reported:
                results[device.name] = res
        for res in measure_devices(profiles, others, eval_path, settings, on_row):
            if res.device in results:
                results[res.device].rows += res.rows
                results[res.device].notes += res.notes
            else:
                results[res.device] = res
    eval_path.unlink(missing_ok=True)
    ordered = [results[p.name] for p in profiles]
    rows = [r for res in ordered for r in res.rows] + _conversion_failures(inputs)
    summary = {
        "threads": cfg.threads,
        "runs": cfg.runs,
        "warmup": cfg.warmup,
        "host": next((res.facts for res, p in zip(ordered, profiles, strict=True) if p.transport == "local"), None),
        "n_test": len(y),
        "devices": {res.device: {"profile": res.profile, "facts": res.facts} for res in ordered},
        "notes": [n for res in ordered for n in res.notes],
        "rows": rows,
    }
    out = atomic_write_json(ctx.out_dir / "benchmark.json", summary)
    return [Benchmark("benchmark", out, {"threads": cfg.threads, "n_rows": len(rows), "devices": cfg.devices})]


# ---------------------------------------- text embedding (task: text-embedding)
# The text form: every text model variant through the device agent, then its embeddings judged against the teacher.
#
# The agent (devices/agent.py) tokenises the held-out sentences itself (devices/wordpiece.py, from the vocabulary in
# the model's metadata), times batch-1 calls at the fixed sequence length, measures memory, and returns the
# embeddings; here they are compared with the teacher's PyTorch embeddings of the same sentences (mean cosine,
# Spearman of pairwise similarities, top-10 retrieval overlap, linear-probe accuracy). Speed-ups are read against
# the teacher's ONNX fp32 file measured on the same device with the same threads.


class TextBenchmarkConfig(BenchmarkConfig):
    """The image form's options (and its device checks: a listed profile must load, an edited one re-measures),
    with the text defaults."""

    warmup: int = Field(10, ge=0, le=100_000, description="untimed runs before timing")
    runs: int = Field(100, ge=1, le=1_000_000, description="timed runs at batch 1")
    eval_limit: int | None = Field(None, ge=20, description="judge embeddings on at most this many test sentences")
    models: list[str] | None = Field(None, description="artifact names (default: every text model)")
    k: int = Field(10, ge=1, le=1000, description="neighbours compared for retrieval agreement")


def _is_text_model(a: Artifact) -> bool:
    return a.kind in MODEL_KINDS and a.meta.get("task") == "text-embedding"


def _text_inputs(cfg: TextBenchmarkConfig, store) -> list[str]:
    names = cfg.models or [n for n, a in store.items() if _is_text_model(a)]
    names += [n for n in store if n.startswith("failures/")]
    return require(store, cfg.id, "text_tokens", "text_teacher", *dict.fromkeys(names))


def _variant(art: Artifact, out: Path, vocab: list[str]) -> Variant:
    if art.kind == "torch":
        from edgekd.text.models import export_inputs

        model = save_program(load_text_model(art), export_inputs(art.meta["max_length"]), out / f"{art.name}.pt2")
        md = {**{k: v for k, v in art.meta.items() if k != "history"}, "vocab": vocab}
        name = f"{art.name}/pytorch"
    else:
        model, md = art.path, read_metadata(art.path) or {}
        name = art.name.split("/", 1)[1].replace("-", f"/{art.kind}-", 1)
    meta = atomic_write_json(out / f"{name.replace('/', '_')}.meta.json", md)
    row = {
        "artifact": art.name,
        "role": art.meta.get("role", "student"),
        "format": FILE_FORMATS[art.kind].label,
        "precision": art.meta.get("precision", "fp32"),
        "size_bytes": model.stat().st_size,
        "params": art.meta.get("params"),
        "trained": art.meta.get("trained", art.meta.get("role") == "teacher"),
        "precision_detail": art.meta.get("precision_detail"),
    }
    return Variant(name, model, meta, FILE_FORMATS[art.kind].runtime, row)


@register_stage("benchmark", TextBenchmarkConfig, _text_inputs, ("onnxruntime", "ai-edge-litert"), task=TEXT)
def run_text_benchmark(cfg: TextBenchmarkConfig, ctx, inputs) -> list[Benchmark]:
    """Measure each variant on each device; judge its embeddings against the teacher's; write benchmark.json."""
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
    measured = []
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
            measured.append((res, profile))
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
        "host": next((res.facts for res, p in measured if p.transport == "local"), None),
        "devices": {res.device: {"profile": res.profile, "facts": res.facts} for res, _ in measured},
        "rows": rows,
    }
    out = atomic_write_json(ctx.out_dir / "benchmark.json", summary)
    ctx.note(f"text benchmark: {len(rows)} rows on {', '.join(cfg.devices)}; teacher probe accuracy {teacher_probe}")
    return [Benchmark("benchmark", out, {"threads": cfg.threads, "n_rows": len(rows), "devices": cfg.devices})]


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

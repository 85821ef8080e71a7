#!/usr/bin/env python3
"""edgekd measurement agent: run one exported model and report latency, memory and accuracy as one JSON object.

This file is the only code that measures models, on the host as on a Raspberry Pi or an Android phone, so timing code
cannot drift between places. It is copied to devices as is, hence its rules: Python stdlib + numpy, plus only the
runtime the model needs (ai-edge-litert or tflite-runtime for .tflite, onnxruntime for .onnx, torch for .pt2),
imported when that format is used; ``pt2_guard.py`` (copied next to it) vets a .pt2 before torch unpickles it.
edgekd also imports it by file path to check exported models.

Text-embedding models (meta ``task: text-embedding``, two inputs: token ids and attention mask) take sentences: the
eval .npz holds a ``text`` string array, the agent tokenises with ``wordpiece.py`` (copied next to this file) from the
vocabulary in the meta, and ``--preds-out`` receives the embeddings instead of top-1 predictions.

Without ``--data`` the run is latency and memory only (as TFLite's ``benchmark_model``): the timed inputs are seeded
random images in [0, 1] of the meta's shape (text: sentences of vocabulary words), and accuracy is null.

    python agent.py --model m.tflite --meta m.json [--data eval.npz] [--threads 1] [--warmup 10] [--runs 100]
                    [--eval-limit N] [--preds-out preds.npy] [--cpus 4,5,6,7] [--no-xnnpack] [--raw-latencies]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

try:
    import resource
except ImportError:  # not on Windows; peak RSS is then reported as null
    resource = None  # type: ignore[assignment]

FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".pt2": "pt2"}
CHUNK = 256  # samples per batch for predict() on dynamic-batch models and for preprocessing: bounds memory on a Pi
TIMING_SAMPLES = 100  # distinct prepared samples the timed loop cycles through, so a big eval set is not copied
SYNTHETIC_SAMPLES, SYNTHETIC_BYTES = 10, 64 << 20  # latency-only runs: random inputs, at most 10 and 64 MB of them
# Bounds on what a file declares, checked before the agent allocates to it (copies of edgekd.formats.metadata and
# edgekd.core.npzfile, which this file cannot import): a declared input shape, a text model's length, an eval .npz.
MAX_INPUT_RANK = 8
MAX_INPUT_ELEMENTS = 50_000_000
MAX_TEXT_LENGTH = 100_000
DEFAULT_MAX_ARRAY_MB = 1024  # EDGEKD_MAX_ARRAY_MB overrides it, as in edgekd


class AgentError(Exception):
    """A problem the user can fix; the message is one line naming the file involved."""


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """Runtimes raise multi-line messages; the report wants one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _version(dist: str, module: Any) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _tensor(name: str, shape: Any, dtype: Any, scale: float = 0.0, zero_point: int = 0) -> dict:
    """One I/O tensor description, the same for every runtime; -1 marks a dynamic dimension."""
    dims = [int(d) if isinstance(d, (int, np.integer)) and d >= 0 else -1 for d in shape]
    quant = {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
    return {"name": name, "shape": dims, "dtype": np.dtype(dtype).name, "quantization": quant}


class _Tflite:
    """LiteRT interpreter, or the older tflite-runtime. Models are exported at batch 1, so predict() loops."""

    def __init__(self, name: str):
        try:
            from ai_edge_litert import interpreter as tfl

            self.runtime, self.version = "litert", _version("ai-edge-litert", tfl)
        except ImportError:
            try:
                from tflite_runtime import interpreter as tfl  # type: ignore[no-redef]

                self.runtime, self.version = "tflite-runtime", _version("tflite-runtime", tfl)
            except ImportError:
                raise AgentError(f"cannot run {name}: no TFLite runtime, pip install ai-edge-litert") from None
        self._tfl = tfl

    def load(self, path: Path, threads: int, xnnpack: bool = True) -> None:
        opts = {}
        if not xnnpack:  # XNNPACK is applied by default; this resolver leaves the builtin kernels alone
            resolver = getattr(getattr(self._tfl, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
            if resolver is None:
                raise AgentError(
                    f"{self.runtime} {self.version} cannot turn XNNPACK off; pip install -U ai-edge-litert"
                )
            opts["experimental_op_resolver_type"] = resolver
        self._it = self._tfl.Interpreter(model_path=str(path), num_threads=threads, **opts)
        self._it.allocate_tensors()
        ins, outs = self._it.get_input_details(), self._it.get_output_details()
        # shape_signature keeps -1 for dynamic dims where shape shows the current allocation
        self.inputs, self.outputs = [
            [_tensor(d["name"], d.get("shape_signature", d["shape"]), d["dtype"], *d["quantization"]) for d in ds]
            for ds in (ins, outs)
        ]
        # litert-torch names inputs args_0, args_1... in argument order: sorted by name is the call order
        order = sorted(range(len(ins)), key=lambda i: ins[i]["name"]) if len(ins) > 1 else [0]
        self.inputs = [self.inputs[i] for i in order]
        self._in, self._out = [ins[i]["index"] for i in order], outs[0]["index"]

    def run(self, *xs: np.ndarray) -> np.ndarray:
        for index, x in zip(self._in, xs, strict=True):
            self._it.set_tensor(index, x)
        self._it.invoke()
        return self._it.get_tensor(self._out)


def _onnx_dtype(type_str: str) -> str:
    """'tensor(float)' -> 'float32'; the integer and float16 names already match numpy's."""
    name = type_str.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(name, name)


class _Onnx:
    """onnxruntime on the CPU, configured so that `threads` is really the number of cores used."""

    def __init__(self, name: str):
        try:
            import onnxruntime as ort
        except ImportError:
            raise AgentError(f"cannot run {name}: onnxruntime is missing, pip install onnxruntime") from None
        self.runtime, self.version, self._ort = "onnxruntime", _version("onnxruntime", ort), ort

    def load(self, path: Path, threads: int, xnnpack: bool = True) -> None:  # XNNPACK is a LiteRT switch only
        ort = self._ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise in a benchmark log
        self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        ins, outs = self._sess.get_inputs(), self._sess.get_outputs()
        self.inputs, self.outputs = [[_tensor(t.name, t.shape, _onnx_dtype(t.type)) for t in ts] for ts in (ins, outs)]
        self._in, self._out = [t.name for t in ins], [outs[0].name]

    def run(self, *xs: np.ndarray) -> np.ndarray:
        return self._sess.run(self._out, dict(zip(self._in, xs, strict=True)))[0]


class _Torch:
    """A torch.export ExportedProgram (.pt2): the reference that the exported files are checked against."""

    def __init__(self, name: str):
        try:
            import torch
        except ImportError:
            raise AgentError(f"cannot run {name}: torch is missing, pip install torch") from None
        self.runtime, self.version, self._torch = "torch", torch.__version__, torch

    def load(self, path: Path, threads: int, xnnpack: bool = True) -> None:
        # Process-wide in torch (there is no per-module setting): a caller that trains afterwards must reset it.
        self._torch.set_num_threads(threads)
        guard = _sibling("pt2_guard")
        try:  # torch.export.load unpickles parts of the archive and evals shape expressions: a crafted file runs code
            guard.check_pt2(path, self._weights_only)
        except guard.UnsafePt2 as exc:
            raise AgentError(f"{path.name}: refusing to load this .pt2: {exc}") from None
        load = self._torch.load
        # Defence in depth: torch's loader falls back to weights_only=False where a safe load fails; the check above
        # rules every such member out, and here any fallback still gets the safe unpickler.
        self._torch.load = lambda *a, **k: load(*a, **{**k, "weights_only": True})
        try:
            program = self._torch.export.load(str(path))
        finally:
            self._torch.load = load
        self._module = program.module()
        nodes = list(program.graph.nodes)
        vals = {n.name: n.meta.get("val") for n in nodes if n.op == "placeholder"}
        self.inputs = [self._describe(name, vals.get(name)) for name in program.graph_signature.user_inputs]
        self.outputs = [self._describe(n.name, n.meta.get("val")) for n in nodes[-1].args[0] if hasattr(n, "meta")]

    def _weights_only(self, data: bytes) -> Any:
        return self._torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    @staticmethod
    def _describe(name: str, val: Any) -> dict:
        shape, dtype = (list(val.shape), str(val.dtype)[6:]) if hasattr(val, "shape") else ([], "float32")
        return _tensor(name, shape, dtype)  # a non-tensor input or output shows as [] float32

    def run(self, *xs: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            out = self._module(*[self._torch.from_numpy(x) for x in xs])
        return (out[0] if isinstance(out, (tuple, list)) else out).numpy()


_BACKENDS = {"tflite": _Tflite, "onnx": _Onnx, "pt2": _Torch}


def _sibling(name: str) -> Any:
    """A helper module that travels next to this file (``pt2_guard.py``), imported by path, not from sys.path."""
    import importlib.util

    path = Path(__file__).resolve().with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"edgekd_agent_{name}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise AgentError(f"{name}.py is missing next to {Path(__file__).name}: copy it along with the agent")
    if spec.name not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[spec.name] = module
    return sys.modules[spec.name]


def _check_meta(meta: Any, where: str) -> dict:
    """Metadata travels with the model; the agent never guesses shape, layout or normalisation."""
    if not isinstance(meta, dict):
        raise AgentError(f"{where}: meta must be a JSON object")
    if meta.get("task") == "text-embedding":
        return _check_text_meta(meta, where)
    shape = meta.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise AgentError(f"{where}: meta input_shape must be [1, C, H, W] (NCHW terms), got {shape!r}")
    _check_shape(shape, f"{where}: meta input_shape")
    if meta.get("input_layout") not in ("NCHW", "NHWC"):
        raise AgentError(f"{where}: meta input_layout must be 'NCHW' or 'NHWC', got {meta.get('input_layout')!r}")
    for key in ("mean", "std"):  # absent means the model normalises internally; one value means every channel
        value = meta.get(key, [1.0])
        ok = isinstance(value, list) and len(value) in (1, shape[1])
        ok = ok and all(isinstance(v, (int, float)) and np.isfinite(v) and (key == "mean" or v > 0) for v in value)
        if not ok:
            raise AgentError(
                f"{where}: meta {key} must be {shape[1]} finite per-channel values (std > 0), got {value!r}"
            )
    return meta


def _check_shape(shape: Any, where: str) -> list[int]:
    """A declared input shape, bounded as edgekd.formats.metadata.check_input_shape does: positive, rank <= 8,
    <= 50 M."""
    if not (isinstance(shape, (list, tuple)) and 1 <= len(shape) <= MAX_INPUT_RANK):
        raise AgentError(f"{where} must be a list of 1 to {MAX_INPUT_RANK} positive integers, got {shape!r}")
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise AgentError(f"{where} must hold positive integers, got {list(shape)!r}")
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_INPUT_ELEMENTS:
        raise AgentError(f"{where} {list(shape)} has {n:,} elements; the agent takes at most {MAX_INPUT_ELEMENTS:,}")
    return [int(d) for d in shape]


def _check_text_meta(meta: dict, where: str) -> dict:
    """A text model needs its vocabulary and fixed length to turn sentences into ids."""
    length, vocab = meta.get("max_length"), meta.get("vocab")
    if not (isinstance(length, int) and 3 <= length <= MAX_TEXT_LENGTH):
        raise AgentError(
            f"{where}: text meta max_length must be an integer from 3 to {MAX_TEXT_LENGTH}, got {length!r}"
        )
    if not (isinstance(vocab, list) and vocab and all(isinstance(t, str) for t in vocab)):
        raise AgentError(f"{where}: text meta needs 'vocab', the tokenizer's vocabulary as a list of strings")
    if meta.get("vocab_size") is not None and meta["vocab_size"] != len(vocab):
        raise AgentError(f"{where}: the vocabulary has {len(vocab)} tokens but the model expects {meta['vocab_size']}")
    return meta


def _round_half_away(v: np.ndarray) -> np.ndarray:
    # TFLite's own quantize kernels round half away from zero; np.round rounds half to even.
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


class Runner:
    """One loaded model behind one interface: prepare() raw images, predict() logits, invoke_once() for timing."""

    def __init__(self, model_path: str, meta: dict, threads: int = 1, xnnpack: bool = True):
        # Taken before the runtime is imported, so peak - before is what the runtime and the model cost.
        self.rss_before_load_mb = _rss_now_mb()
        path = Path(model_path)
        self.model_path, self.threads, self.xnnpack = str(path), int(threads), bool(xnnpack)
        self.meta = _check_meta(meta, path.name)
        if not path.is_file():
            raise AgentError(f"model file not found: {path}")
        if path.suffix.lower() not in FORMATS:
            raise AgentError(f"{path.name}: unknown model format, expected one of {', '.join(FORMATS)}")
        if self.threads < 1:
            raise AgentError(f"threads must be >= 1, got {threads}")
        self.format = FORMATS[path.suffix.lower()]
        self._backend = _BACKENDS[self.format](path.name)  # imports the runtime, or says which package to install
        self.runtime, self.runtime_version = self._backend.runtime, self._backend.version
        start = time.perf_counter_ns()  # load time is creating the interpreter/session, not importing the runtime
        try:
            self._backend.load(path, self.threads, self.xnnpack)
        except AgentError:
            raise
        except Exception as exc:  # truncated or corrupt file, unsupported op: the runtime's own words, one line
            raise AgentError(f"{self.runtime} cannot load {path.name}: {_one_line(exc)}") from None
        self.load_time_ms = (time.perf_counter_ns() - start) / 1e6
        self.rss_after_load_mb = _rss_now_mb()
        self.last_preds: np.ndarray | None = None  # argmax of the last benchmark() eval, for --preds-out
        self.last_times_ms: list[float] = []  # every timed run of the last benchmark(), for --raw-latencies
        self.text = meta.get("task") == "text-embedding"
        if self.text:
            self._init_text(meta, path)
            return
        _, c, h, w = meta["input_shape"]
        self._chw = (c, h, w)
        self._mean = np.asarray(meta.get("mean", [0.0]), dtype=np.float32).reshape(1, -1, 1, 1)
        self._std = np.asarray(meta.get("std", [1.0]), dtype=np.float32).reshape(1, -1, 1, 1)
        self._nhwc = meta["input_layout"] == "NHWC"
        inp = self._backend.inputs[0]
        want = [h, w, c] if self._nhwc else [c, h, w]
        got = inp["shape"][1:]
        if len(got) != 3 or any(got[i] not in (-1, want[i]) for i in range(3)):
            raise AgentError(
                f"{path.name}: model input shape {inp['shape']} does not match meta input_shape "
                f"{meta['input_shape']} with layout {meta['input_layout']} (expected [N, {', '.join(map(str, want))}])"
            )
        # A batch dim fixed at 1 (TFLite, static ONNX/pt2 exports) means one sample per call.
        self._batch1 = inp["shape"][0] == 1

    def _init_text(self, meta: dict, path: Path) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # wordpiece.py travels next to this file
        from wordpiece import WordPiece

        try:
            self.tokenizer = WordPiece(meta["vocab"], bool(meta.get("do_lower_case", True)))
        except ValueError as exc:
            raise AgentError(f"{path.name}: {exc}") from None
        self.max_length = int(meta["max_length"])
        self.truncated = 0
        ins = self._backend.inputs
        if len(ins) != 2 or any(t["shape"][-1] not in (-1, self.max_length) for t in ins):
            raise AgentError(f"{path.name}: a text model takes (input_ids, attention_mask) of shape "
                             f"[1, {self.max_length}], the file declares {[t['shape'] for t in ins]}")  # fmt: skip
        self._batch1 = ins[0]["shape"][0] == 1

    def io_details(self) -> dict:
        return {"inputs": self._backend.inputs, "outputs": self._backend.outputs}

    def prepare_text(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Sentences -> (ids, mask) in the dtypes the file declares; counts sentences cut at max_length."""
        rows = [self.tokenizer.encode(str(t), self.max_length) for t in texts]
        self.truncated += sum(r[2] for r in rows)
        ids, mask = (np.asarray([r[k] for r in rows]) for k in (0, 1))
        d0, d1 = (np.dtype(t["dtype"]) for t in self._backend.inputs)
        return np.ascontiguousarray(ids, dtype=d0), np.ascontiguousarray(mask, dtype=d1)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw float images in [0, 1], (N, C, H, W) -> the model's input tensor: normalised, laid out, quantised."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 4 and x.shape[1] == 1 and self._chw[0] == 3:
            # grey images for an RGB model (an edgekd file that makes grey itself): R = G = B, as PIL's convert("RGB")
            x = np.repeat(x, 3, axis=1)
        if x.ndim != 4 or x.shape[1:] != self._chw:
            raise AgentError(
                f"input has shape {tuple(x.shape)}, {Path(self.model_path).name} expects "
                f"(N, {', '.join(map(str, self._chw))}) raw NCHW images (meta input_shape)"
            )
        x = (x - self._mean) / self._std
        if self._nhwc:
            x = x.transpose(0, 2, 3, 1)
        inp = self._backend.inputs[0]
        dtype = np.dtype(inp["dtype"])
        if dtype.kind in "iu":
            if not inp["quantization"]:
                raise AgentError(f"{Path(self.model_path).name}: {dtype.name} input has no scale/zero_point")
            q, info = inp["quantization"], np.iinfo(dtype)
            x = np.clip(_round_half_away(x / q["scale"]) + q["zero_point"], info.min, info.max)
        return np.ascontiguousarray(x, dtype=dtype)

    def invoke_once(self, x1) -> None:
        """The timed unit: set the input(s), invoke, read the output, for one prepared batch-1 sample."""
        if self.text:
            self._backend.run(*x1)
        else:
            self._backend.run(x1)

    def synthetic_inputs(self) -> np.ndarray:
        """What a latency-only run (no eval data) times: seeded random raw images in [0, 1] of the meta's shape, or
        for a text model sentences of words from its vocabulary. Never used for accuracy."""
        rng = np.random.default_rng(0)
        if self.text:
            words = [t for t in self.meta["vocab"] if t.isalpha()]
            if not words:
                raise AgentError("no --data and no plain words in the vocabulary to time sentences with: pass --data")
            k = max(1, min(16, self.max_length - 2))  # within max_length: [CLS] words [SEP], padded to a fixed length
            return np.asarray([" ".join(rng.choice(words, k)) for _ in range(SYNTHETIC_SAMPLES)])
        n = max(1, min(SYNTHETIC_SAMPLES, SYNTHETIC_BYTES // (4 * int(np.prod(self._chw)))))
        return rng.random((n, *self._chw), dtype=np.float32)

    def prepare_any(self, x):
        return self.prepare_text(x) if self.text else self.prepare(x)

    def take(self, prepared, i: int):
        """Sample ``i`` of a prepared batch, kept 2-D (batch 1)."""
        return tuple(a[i : i + 1] for a in prepared) if self.text else prepared[i : i + 1]

    def embed(self, texts) -> np.ndarray:
        """Sentences -> float32 embeddings (N, D), one sentence per call at the fixed length."""
        if len(texts) == 0:
            raise AgentError("embed() got no sentences")
        ids, mask = self.prepare_text(texts)
        out = np.concatenate([self._backend.run(ids[i : i + 1], mask[i : i + 1]) for i in range(len(ids))])
        q = self._backend.outputs[0]["quantization"]
        if q and out.dtype.kind in "iu":
            out = (out.astype(np.float32) - q["zero_point"]) * q["scale"]
        return out.astype(np.float32, copy=False).reshape(len(texts), -1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw images (N, C, H, W) in [0, 1] -> float32 logits (N, K), integer outputs dequantised."""
        x = np.asarray(x)
        if len(x) == 0:
            raise AgentError("predict() got an empty batch")
        step, outs = (1 if self._batch1 else CHUNK), []
        for i in range(0, len(x), CHUNK):  # prepare in chunks: a float copy of a whole eval set may not fit on a Pi
            prepared = self.prepare(x[i : i + CHUNK])
            outs += [self._backend.run(prepared[j : j + step]) for j in range(0, len(prepared), step)]
        out, q = np.concatenate(outs), self._backend.outputs[0]["quantization"]
        if q and out.dtype.kind in "iu":
            out = (out.astype(np.float32) - q["zero_point"]) * q["scale"]
        return out.astype(np.float32, copy=False).reshape(len(x), -1)


def load_runner(model_path: str, meta: dict, threads: int = 1, xnnpack: bool = True) -> Runner:
    return Runner(model_path, meta, threads, xnnpack)


def _rss_now_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 2)
    except (OSError, ValueError, IndexError):
        pass
    return _peak_rss_mb()  # no /proc (macOS): the peak so far is the best stand-in


def _peak_rss_mb() -> float | None:
    # VmHWM first: ru_maxrss survives fork+exec on Linux, so a child of a big parent (edgekd with torch loaded)
    # would report the parent's peak; VmHWM belongs to this process image only.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 2)
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 2)  # bytes on macOS, KB on Linux


def _top1(preds: np.ndarray, ref: np.ndarray | None, name: str) -> float | None:
    if ref is None:
        return None
    ref = np.asarray(ref).reshape(-1)
    if len(ref) < len(preds):
        raise AgentError(f"{name} has {len(ref)} entries but {len(preds)} samples are evaluated")
    return float(np.mean(preds == ref[: len(preds)]))


def benchmark(
    runner: Runner,
    x_eval: np.ndarray,
    y_eval: np.ndarray | None = None,
    teacher_pred: np.ndarray | None = None,
    warmup: int = 10,
    runs: int = 100,
    eval_limit: int | None = None,
    evaluate: bool = True,
) -> dict:
    """Time `runs` batch-1 invocations after `warmup`, then evaluate top-1 on the first `eval_limit` samples.

    ``evaluate=False``: ``x_eval`` only feeds the timed runs (a latency-only run), accuracy stays null.
    """
    if runs < 1 or warmup < 0:
        raise AgentError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    n = len(x_eval) if eval_limit is None or not evaluate else min(int(eval_limit), len(x_eval))
    if n < 1:
        raise AgentError("the evaluation set is empty")
    # Preprocessing happens here, outside the timed region: the latency is the model's, not numpy's.
    samples = runner.prepare_any(x_eval[: min(n, TIMING_SAMPLES)])
    k = min(n, TIMING_SAMPLES)
    for i in range(warmup):
        runner.invoke_once(runner.take(samples, i % k))
    times_ns = np.empty(runs, dtype=np.int64)
    gc_was_on = gc.isenabled()
    gc.disable()  # as timeit does: a collection landing inside one run would be charged to the model
    try:
        for i in range(runs):
            x1 = runner.take(samples, i % k)
            start = time.perf_counter_ns()
            runner.invoke_once(x1)
            times_ns[i] = time.perf_counter_ns() - start
    finally:
        if gc_was_on:
            gc.enable()
    ms = times_ns / 1e6
    runner.last_times_ms = [round(float(v), 4) for v in ms]
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    latency = {"mean": ms.mean(), "std": ms.std(), "p50": p50, "p90": p90, "p99": p99, "min": ms.min(), "max": ms.max()}

    if not evaluate:
        accuracy = agreement = runner.last_preds = None
        n = runner.truncated = 0  # the truncation count is about eval sentences
    elif runner.text:  # the embeddings are the output; edgekd compares them with the teacher's on the host
        runner.truncated = 0
        runner.last_preds = runner.embed(x_eval[:n])
        accuracy = agreement = None
    else:
        preds = runner.predict(x_eval[:n]).argmax(axis=1).astype(np.int64)
        runner.last_preds = preds
        accuracy, agreement = _top1(preds, y_eval, "y"), _top1(preds, teacher_pred, "teacher_pred")
    return {
        "status": "ok",
        "format": runner.format,
        "runtime": runner.runtime,
        "runtime_version": runner.runtime_version,
        "precision": runner.meta.get("precision"),
        "threads": runner.threads,
        "xnnpack": runner.xnnpack if runner.format == "tflite" else None,
        "io": runner.io_details(),
        "load_time_ms": round(runner.load_time_ms, 3),
        "latency_ms": {key: round(float(v), 4) for key, v in latency.items()},
        "runs": runs,
        "warmup": warmup,
        "throughput_ips": round(1000.0 / float(ms.mean()), 2),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_load_mb": runner.rss_before_load_mb,
        "rss_after_load_mb": runner.rss_after_load_mb,
        "accuracy": accuracy,
        "teacher_agreement": agreement,
        "n_eval": n,
        **({"truncated": runner.truncated, "max_length": runner.max_length} if runner.text else {}),
        "device": device_facts(),
    }


def _key_values(path: str, sep: str) -> dict[str, str]:
    """'key<sep>value' lines (/proc/cpuinfo, /etc/os-release); the first occurrence of a key wins."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, found, value = line.partition(sep)
                if found and key.strip() not in out:
                    out[key.strip()] = value.strip().strip('"')
    except OSError:
        pass
    return out


def device_facts() -> dict:
    cpu = _key_values("/proc/cpuinfo", ":")
    release = _key_values("/etc/os-release", "=")
    # x86 has 'model name'; 64-bit Raspberry Pi OS has only 'Model' (the board) and some ARM kernels 'Hardware'.
    model = cpu.get("model name") or cpu.get("Model") or cpu.get("Hardware") or platform.processor()
    try:
        usable = len(os.sched_getaffinity(0))  # what taskset/cgroups leave us, may be fewer than the machine has
    except (AttributeError, OSError):
        usable = os.cpu_count()
    os_name = platform.platform()
    if release.get("PRETTY_NAME"):
        os_name += f" ({release['PRETTY_NAME']})"
    return {
        "cpu_model": model or platform.machine(),
        "board": cpu.get("Model"),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "os": os_name,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise AgentError(f"bad arguments: {message}")  # keep the one-JSON-line contract even for usage errors


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description="Benchmark one exported model (.tflite, .onnx, .pt2); prints one JSON object.")
    p.add_argument("--model", required=True, help="model file: .tflite, .onnx or .pt2")
    p.add_argument("--meta", required=True, help="JSON metadata: input_shape, input_layout, mean, std, labels")
    p.add_argument(
        "--data",
        default=None,
        help=".npz with x (float32 N,C,H,W in [0,1]), optional y, teacher_pred; "
        "without it: latency and memory only, on random inputs",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate accuracy on the first N samples only")
    p.add_argument("--preds-out", default=None, help="save the top-1 predictions (int64 .npy; text: embeddings) here")
    p.add_argument("--cpus", default=None, help="pin to these CPU ids, e.g. 4,5,6,7 (the big cores of a phone)")
    p.add_argument("--no-xnnpack", action="store_true", help="LiteRT: builtin kernels instead of the XNNPACK delegate")
    p.add_argument("--raw-latencies", action="store_true", help="also report every timed run (latencies_ms)")
    return p.parse_args(argv)


def _npz_declared_bytes(path: Path) -> dict[str, int]:
    """Bytes each member of an .npz would take in memory, from its zip entry and its .npy header (not its data)."""
    import zipfile

    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            size = info.file_size
            if info.filename.endswith(".npy"):
                with zf.open(info) as fh:
                    fmt = np.lib.format
                    read = fmt.read_array_header_1_0 if fmt.read_magic(fh) == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(fh)
                n = dtype.itemsize
                for d in shape:
                    n *= int(d)
                size = max(size, n)
            out[info.filename] = size
    return out


def _check_npz_size(path: Path) -> None:
    """Refuse an .npz that declares more than EDGEKD_MAX_ARRAY_MB (a 4 MB deflate bomb can inflate to gigabytes)."""
    raw = os.environ.get("EDGEKD_MAX_ARRAY_MB", "").strip()
    try:
        limit_mb = float(raw) if raw else DEFAULT_MAX_ARRAY_MB
    except ValueError:
        raise AgentError(f"EDGEKD_MAX_ARRAY_MB={raw!r} must be a number of megabytes") from None
    try:
        sizes = _npz_declared_bytes(path)
    except Exception as exc:  # not a zip, a bad header: the same words np.load would have
        raise AgentError(f"data file {path} is not a readable .npz: {_one_line(exc)}") from None
    total = sum(sizes.values())
    if total > limit_mb * 2**20:
        name = max(sizes, key=sizes.get)
        raise AgentError(
            f"data file {path}: '{name}' would take {sizes[name] / 2**20:,.0f} MB in memory ({total / 2**20:,.0f} MB "
            f"in all); the agent loads at most {limit_mb:,.0f} MB (set EDGEKD_MAX_ARRAY_MB higher if the data is real)"
        )


def _load_eval(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    _check_npz_size(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise AgentError(f"data file {path} is not a readable .npz: {_one_line(exc)}") from None
    if "text" in arrays:  # sentences for a text model (a unicode array); embeddings go to --preds-out
        if arrays["text"].dtype.kind != "U":
            raise AgentError(f"data file {path}: 'text' must be an array of strings")
        return arrays["text"], None, None
    if "x" not in arrays:
        raise AgentError(f"data file {path} has no 'x' array (found: {', '.join(arrays) or 'nothing'})")
    x = arrays["x"]
    if x.dtype.kind != "f":
        raise AgentError(f"data file {path}: x is {x.dtype}, expected float32 raw images in [0, 1]")
    if x.size and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise AgentError(f"data file {path}: x spans [{x.min():.3g}, {x.max():.3g}], expected raw images in [0, 1]")
    return x.astype(np.float32, copy=False), arrays.get("y"), arrays.get("teacher_pred")


def _run(args: argparse.Namespace) -> dict:
    model, meta_path, data = Path(args.model), Path(args.meta), Path(args.data) if args.data else None
    for path, what in ((model, "model"), (meta_path, "meta"), (data, "data")):
        if path is not None and not path.is_file():
            raise AgentError(f"{what} file not found: {path}")
    if data is None and args.preds_out:
        raise AgentError("--preds-out needs --data: a latency-only run makes no predictions")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AgentError(f"meta file {meta_path} is not valid JSON: {_one_line(exc)}") from None
    cpus = _pin(args.cpus) if args.cpus else None  # before the runtime starts its threads, which inherit it
    # the data before the model, so rss_before_load_mb already includes it
    x, y, teacher = _load_eval(data) if data is not None else (None, None, None)
    runner = load_runner(str(model), meta, args.threads, not args.no_xnnpack)
    try:
        if x is None:
            result = benchmark(runner, runner.synthetic_inputs(), warmup=args.warmup, runs=args.runs, evaluate=False)
        else:
            result = benchmark(runner, x, y, teacher, warmup=args.warmup, runs=args.runs, eval_limit=args.eval_limit)
    except AgentError as exc:  # benchmark() only complains about the data: wrong shape, too few labels
        raise AgentError(f"data file {data}: {exc}" if data is not None else str(exc)) from None
    except Exception as exc:  # a runtime failing mid-run (bad op, wrong dtype): name the model it happened on
        raise AgentError(f"{runner.runtime} failed running {model.name}: {_one_line(exc)}") from None
    if args.preds_out:
        np.save(args.preds_out, runner.last_preds)
    if args.raw_latencies:
        result["latencies_ms"] = runner.last_times_ms
    return {"model": model.name, "size_bytes": model.stat().st_size, "cpus": cpus, **result}


def _pin(spec: str) -> list[int]:
    """Pin this process (and the runtime threads it will start) to the given CPUs; all of them must exist."""
    try:
        cpus = sorted({int(c) for c in spec.split(",") if c.strip()})
    except ValueError:
        raise AgentError(f"--cpus {spec}: expected CPU ids like 4,5,6,7") from None
    n = os.cpu_count() or 0
    missing = [c for c in cpus if c >= n or c < 0]
    if not cpus or missing:
        raise AgentError(f"--cpus {spec}: cannot pin to CPUs {missing or spec}; the device has {n} cores (0-{n - 1})")
    try:
        os.sched_setaffinity(0, cpus)
    except AttributeError:
        raise AgentError("--cpus: this OS cannot pin a process to CPUs (no sched_setaffinity)") from None
    except OSError as exc:  # e.g. a cgroup/cpuset that does not allow these cores
        raise AgentError(f"--cpus {spec}: cannot pin to these CPUs: {_one_line(exc)}") from None
    return sorted(os.sched_getaffinity(0))


def main(argv: list[str] | None = None) -> int:
    # Runtimes print from C code straight to fd 1; send all of it to stderr so stdout holds only our JSON line.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result, code = _run(_parse(argv)), 0
    except AgentError as exc:
        result, code = {"status": "failed", "error": str(exc)}, 1
    except Exception as exc:  # anything unforeseen still ends as one JSON line, never a traceback
        result, code = {"status": "failed", "error": f"{type(exc).__name__}: {_one_line(exc)}"}, 1
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    print(json.dumps(result))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())

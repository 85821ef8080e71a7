"""Agent overhead: the latency devices/agent.py reports vs a bare LiteRT interpreter loop, same model, same threads.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/agent_overhead.py runs/x/04_convert_tflite/student-int8.tflite

Both run in fresh processes of this Python, interleaved (agent, bare, agent, bare, ...) so that load from other
processes hits both alike; each round times the same number of runs on the same prepared test images. The bare loop
is what any hand-written benchmark does: set_tensor, invoke, get_tensor between two perf_counter_ns calls. The figure
is the median over rounds of agent/bare (on the mean and on the median latency), with the per-round range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd.edge.bench_inputs import find_dataset, find_meta, write_eval_npz, write_meta
from edgekd.edge.transports.local import run_agent

# The bare loop: LiteRT and numpy only, input prepared outside the timed region exactly as the agent does.
BARE = r"""
import json, sys, time, numpy as np
from ai_edge_litert import interpreter as tfl
model, data, meta, threads, warmup, runs = sys.argv[1:7]
meta = json.load(open(meta)); threads, warmup, runs = int(threads), int(warmup), int(runs)
it = tfl.Interpreter(model_path=model, num_threads=threads); it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
mean = np.asarray(meta.get("mean", [0.0]), np.float32).reshape(1, -1, 1, 1)
std = np.asarray(meta.get("std", [1.0]), np.float32).reshape(1, -1, 1, 1)
x = ((np.load(data)["x"][:100] - mean) / std).astype(inp["dtype"])
i_in, i_out, k = inp["index"], out["index"], len(x)
for i in range(warmup):
    it.set_tensor(i_in, x[i % k : i % k + 1]); it.invoke(); it.get_tensor(i_out)
ts = np.empty(runs, np.int64)
for i in range(runs):
    x1 = x[i % k : i % k + 1]
    t0 = time.perf_counter_ns()
    it.set_tensor(i_in, x1); it.invoke(); it.get_tensor(i_out)
    ts[i] = time.perf_counter_ns() - t0
ms = ts / 1e6
print(json.dumps({"mean": float(ms.mean()), "p50": float(np.median(ms))}))
"""


def _bare(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a .tflite from an edgekd run directory (float32 input/output)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--runs", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-overhead-"))
    data = write_eval_npz(find_dataset(args.model), tmp / "eval.npz")
    meta = write_meta(find_meta(args.model), tmp / "meta.json")
    ratios: dict[str, list[float]] = {"mean": [], "p50": []}
    cmd = [sys.executable, "-c", BARE, *map(str, (args.model, data, meta, args.threads, args.warmup, args.runs))]
    for r in range(args.rounds):
        first_bare = r % 2 == 1  # alternate which goes first, so neither always runs on a warmer machine
        b = _bare(cmd) if first_bare else None
        a = run_agent(args.model, meta, data, args.threads, args.warmup, args.runs, eval_limit=1)
        if a["status"] != "ok":
            sys.exit(f"agent failed: {a['error']}")
        b = b or _bare(cmd)
        for key in ratios:
            ratios[key].append(a["latency_ms"][key] / b[key])
        print(f"round {r + 1}: agent mean {a['latency_ms']['mean']:.4f} p50 {a['latency_ms']['p50']:.4f} ms, "
              f"bare mean {b['mean']:.4f} p50 {b['p50']:.4f} ms")  # fmt: skip
    med = {k: statistics.median(v) for k, v in ratios.items()}
    print(
        f"\n{args.model.name}, {args.threads} thread(s), {args.runs} runs x {args.rounds} rounds: agent/bare latency "
        f"ratio {med['mean']:.3f} on the mean (rounds {min(ratios['mean']):.3f}-{max(ratios['mean']):.3f}), "
        f"{med['p50']:.3f} on the median (rounds {min(ratios['p50']):.3f}-{max(ratios['p50']):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent's device options: CPU affinity, XNNPACK off, per-run latencies (what profiles ask of it)."""

from __future__ import annotations

import json
import subprocess
import sys

from edgekd.formats.runner import agent_path


def _agent(tiny, *extra, data=True):
    args = ["--model", tiny["model"], "--meta", tiny["meta"], "--runs", "7", "--warmup", "1"]
    args += ["--data", tiny["data"]] if data else []
    proc = subprocess.run([sys.executable, str(agent_path()), *map(str, args), *extra], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0])


def test_pinning_xnnpack_off_and_raw_latencies(tiny):
    code, on = _agent(tiny, "--raw-latencies")
    code_off, off = _agent(tiny, "--cpus", "0", "--no-xnnpack")
    assert code == code_off == 0
    assert on["xnnpack"] is True and on["cpus"] is None and len(on["latencies_ms"]) == 7
    assert min(on["latencies_ms"]) == on["latency_ms"]["min"]
    assert off["xnnpack"] is False and off["cpus"] == [0] and off["device"]["usable_cores"] == 1
    assert "latencies_ms" not in off
    assert on["accuracy"] == off["accuracy"]  # same kernels' answers, different speed


def test_pinning_to_cores_the_device_lacks_is_a_one_line_error(tiny):
    code, res = _agent(tiny, "--cpus", "0,999")
    assert code == 1 and res["status"] == "failed"
    assert res["error"].startswith("--cpus 0,999: cannot pin to CPUs [999]; the device has ")


def test_without_data_the_agent_times_random_inputs_and_reports_no_accuracy(tiny):
    code, res = _agent(tiny, "--raw-latencies", data=False)
    assert code == 0 and res["status"] == "ok"
    assert len(res["latencies_ms"]) == 7 and res["peak_rss_mb"] > 0
    assert res["accuracy"] is None and res["teacher_agreement"] is None and res["n_eval"] == 0
    code, res = _agent(tiny, "--preds-out", "p.npy", data=False)
    assert code == 1 and res["error"] == "--preds-out needs --data: a latency-only run makes no predictions"

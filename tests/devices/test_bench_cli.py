"""``edgekd bench`` end to end in a subprocess: several devices in parallel, one report, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from edgekd.edge.transports.loopback_sshd import free_port


def edgekd(*args):
    cmd = [sys.executable, "-m", "edgekd", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _profile_file(path, profile) -> str:
    path.write_text(yaml.safe_dump(profile.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return str(path)


def test_bench_on_local_ssh_and_a_dead_device_in_one_report(sshd, tiny, tmp_path):
    loop = _profile_file(tmp_path / "loopback.yaml", sshd.profile(python=sys.executable))
    dead = sshd.profile("dead-pi", ssh={"port": free_port(), "retries": 1})
    dead_file = _profile_file(tmp_path / "dead-pi.yaml", dead)
    proc = edgekd("bench", tiny["model"], "--meta", tiny["meta"], "--data", tiny["data"], "--runs", 20, "--warmup", 2,
                  "-d", "local", "-d", loop, "-d", dead_file, "-o", tmp_path / "out")  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a device failed: the exit code says so, the others are reported
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: dead-pi: cannot reach edgekd-loopback after 1 attempt:")
    report = json.loads((tmp_path / "out/report.json").read_text())
    rows = {r["device"]: r for r in report["variants"]}
    assert [rows["local"]["status"], rows["loopback"]["status"], rows["dead-pi"]["status"]] == ["ok", "ok", "failed"]
    assert rows["local"]["accuracy"] == rows["loopback"]["accuracy"]  # same model, same data, same runtime
    assert len(rows["loopback"]["latencies_ms"]) == 20
    assert report["devices"]["loopback"]["facts"]["machine"] and report["devices"]["loopback"]["profile"]["transport"]
    md = (tmp_path / "out/report.md").read_text()
    assert md.index("### local") < md.index("### loopback") < md.index("### dead-pi")
    assert "(via ssh, edgekd-loopback)" in md and "latency_distribution.png" in md
    assert (tmp_path / "out/latency_distribution.png").read_bytes().startswith(b"\x89PNG")
    # no secrets: the private key's body appears in no report file and in nothing the command printed
    secret = "".join(sshd.key.read_text().splitlines()[1:-1])[:40]
    assert len(secret) == 40
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert secret not in written.replace("\n", "") and secret not in proc.stdout + proc.stderr


def test_bench_bad_input_is_one_line(tiny, tmp_path):
    proc = edgekd("bench", tiny["model"], "--device", "raspbery-pi-4")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "unknown device profile 'raspbery-pi-4' (did you mean 'raspberry-pi-4'?); known: " in proc.stderr
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(tiny["model"].read_bytes())
    proc = edgekd("bench", lone, "--data", tiny["data"])  # no metadata: nothing says how to normalise the data
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: --data needs lone.tflite's normalisation (mean, std) and label order")


def test_latency_only_bench_ships_no_eval_file_to_local_and_ssh(sshd, tiny, tmp_path, monkeypatch):
    from edgekd.cli.bench import run_bench
    from edgekd.edge.transports.base import AgentSession

    pushed = []
    push = AgentSession.push
    monkeypatch.setattr(AgentSession, "push", lambda self, path: pushed.append(path.name) or push(self, path))
    lone = tmp_path / "lone.tflite"  # no metadata at all: timed from its own input tensor
    lone.write_bytes(tiny["model"].read_bytes())
    loop = _profile_file(tmp_path / "loopback.yaml", sshd.profile(python=sys.executable))
    report = run_bench(lone, ["local", loop], runs=5, warmup=1)
    rows = {r["device"]: r for r in report["variants"]}
    assert set(rows) == {"local", "loopback"}
    for row in rows.values():
        assert row["status"] == "ok", row["error"]
        assert row["accuracy"] is None and row["n_eval"] == 0 and len(row["latencies_ms"]) == 5
    assert set(pushed) == {"agent.py", "wordpiece.py", "pt2_guard.py", "lone.tflite", "lone.meta.json"}
    assert report["notes"][0].startswith("lone.tflite carries no edgekd metadata: timed on random inputs")
    assert report["notes"][1].startswith("accuracy not measured (no evaluation data): add --data digits")

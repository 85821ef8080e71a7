"""The SSH transport against a real OpenSSH server on 127.0.0.1 (started by conftest.py, skipped only if it cannot)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.edge.profiles import load_profile
from edgekd.edge.transports.base import TransportError
from edgekd.edge.transports.loopback_sshd import free_port
from edgekd.edge.transports.measure import measure_device, measure_devices
from edgekd.edge.transports.ssh import SshTransport

PY = sys.executable  # the "device" is this machine: its Python has numpy and ai-edge-litert
NASTY = "dir with space 'single' \"double\"; touch pwned"


def _local_row(tiny, variant, fast):
    return measure_device(load_profile("local"), [variant], tiny["data"], fast).rows[0]


def test_measures_through_a_path_with_spaces_quotes_and_semicolon(sshd, tiny, variant, tmp_path, fast):
    workdir = tmp_path / NASTY
    variant.preds_out = tmp_path / "preds.npy"
    res = measure_device(sshd.profile(python=PY, workdir=str(workdir)), [variant], tiny["data"], fast)
    row = res.rows[0]
    assert row["status"] == "ok", row["error"]
    assert row["device"] == "loopback" and len(row["latencies_ms"]) == fast.runs
    local = _local_row(tiny, variant, fast)
    assert (row["accuracy"], row["teacher_agreement"]) == (local["accuracy"], local["teacher_agreement"])
    assert np.load(variant.preds_out).shape == (40,)  # pulled back from the device
    assert res.facts["machine"] and res.facts["cpu_model"]  # as the device reported them
    assert workdir.is_dir() and not any(workdir.iterdir()), "the temporary directory on the device is removed"
    assert not list(tmp_path.rglob("pwned")) and not (Path.home() / "pwned").exists(), "';' must not run a command"


def test_connection_refused_is_retried_with_backoff_then_one_clear_line(sshd):
    profile = sshd.profile(ssh={"port": free_port(), "retries": 3, "backoff_s": 0.5})
    waits: list[float] = []
    transport = SshTransport(profile.name, profile.ssh, sleep=waits.append)
    with pytest.raises(TransportError) as err:
        transport.open()
    assert waits == [0.5, 1.0]  # 3 attempts, doubling waits
    msg = str(err.value)
    assert err.value.fatal and "\n" not in msg
    assert msg.startswith("loopback: cannot reach edgekd-loopback after 3 attempts") and "Connection refused" in msg


def test_unreachable_device_fails_its_rows_and_the_other_device_is_kept(sshd, tiny, variant, fast):
    dead = sshd.profile("dead-pi", ssh={"port": free_port(), "retries": 2, "backoff_s": 0.05})
    results = measure_devices([dead, sshd.profile(python=PY)], [variant, variant], tiny["data"], fast)
    assert [r.device for r in results] == ["dead-pi", "loopback"]
    assert [r["status"] for r in results[0].rows] == ["failed", "failed"]  # second variant not retried again
    assert "cannot reach" in results[0].rows[1]["error"]
    assert [r["status"] for r in results[1].rows] == ["ok", "ok"]


@pytest.mark.parametrize("case", ["wrong key", "wrong user"])
def test_authentication_failure_is_not_retried(sshd, tmp_path, case):
    if case == "wrong key":
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        cfg = tmp_path / "ssh_config"
        cfg.write_text(sshd.client_config.read_text().replace(str(sshd.key), str(other)))
        profile = sshd.profile(ssh={"ssh_config": str(cfg)})
    else:
        profile = sshd.profile(ssh={"user": "nobody"})
    waits: list[float] = []
    with pytest.raises(TransportError, match=r"authentication failed for .*Permission denied") as err:
        SshTransport(profile.name, profile.ssh, sleep=waits.append).open()
    assert err.value.fatal and waits == []


def test_changed_host_key_is_refused_and_unknown_key_needs_opt_in(sshd, tmp_path):
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    changed = tmp_path / "known_hosts_changed"
    kind, key = impostor.with_suffix(".pub").read_text().split()[:2]
    changed.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    profile = sshd.profile(ssh={"known_hosts": str(changed)})
    with pytest.raises(TransportError, match="host key of edgekd-loopback is unknown or has changed"):
        SshTransport(profile.name, profile.ssh, sleep=lambda s: None).open()

    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(TransportError, match="host key"):
        SshTransport("x", sshd.profile(ssh={"known_hosts": str(empty)}).ssh).open()
    tofu = sshd.profile(ssh={"known_hosts": str(empty), "accept_new_host_key": True})
    transport = SshTransport("x", tofu.ssh)
    transport.open()  # trust on first use, when the profile asks for it
    transport.close()
    assert f"[127.0.0.1]:{sshd.port}" in empty.read_text()


def test_disconnect_mid_run_is_a_clear_error_and_other_devices_are_kept(sshd, tiny, variant, tmp_path, fast):
    # A "python" on the device that drops the link: it kills the sshd process serving its own connection.
    killer = tmp_path / "drop_link.sh"
    killer.write_text(
        "#!/bin/sh\npid=$$\nwhile [ \"$pid\" -gt 1 ]; do\n  pid=$(cut -d' ' -f4 /proc/$pid/stat)\n"
        '  case $(cat /proc/$pid/comm) in sshd*) kill -9 "$pid"; sleep 5; exit 0;; esac\ndone\n'
    )
    killer.chmod(0o755)
    flaky = sshd.profile("flaky-pi", python=str(killer), ssh={"retries": 2, "backoff_s": 0.05})
    results = measure_devices([flaky, sshd.profile(python=PY)], [variant], tiny["data"], fast)
    err = results[0].rows[0]["error"]
    assert results[0].rows[0]["status"] == "failed"
    assert err.startswith("flaky-pi: connection to edgekd-loopback lost during the run (2 attempts)"), err
    assert results[1].rows[0]["status"] == "ok"


def test_device_without_litert_names_the_pip_package(sshd, tiny, variant, tmp_path, fast):
    import numpy

    only_numpy = tmp_path / "site"
    only_numpy.mkdir()
    (only_numpy / "numpy").symlink_to(Path(numpy.__file__).parent)
    python = f"env PYTHONPATH={only_numpy} {PY} -S"  # -S: no site-packages, so no LiteRT
    row = measure_device(sshd.profile(python=python), [variant], tiny["data"], fast).rows[0]
    assert row["status"] == "failed" and "pip install ai-edge-litert" in row["error"]


def test_device_without_python_says_what_to_install(sshd, tiny, variant, fast):
    row = measure_device(sshd.profile(python="python3.99"), [variant], tiny["data"], fast).rows[0]
    assert row["error"] == "python3.99 not found on the device: install Python 3, then pip install numpy ai-edge-litert"


def test_model_the_device_cannot_load_surfaces_the_runtime_error(sshd, tiny, variant, tmp_path, fast):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    variant.model = bad
    row = measure_device(sshd.profile(python=PY), [variant], tiny["data"], fast).rows[0]
    assert row["status"] == "failed" and row["error"].startswith("litert cannot load broken.tflite:")


def test_ssh_command_honours_the_profile_and_never_prompts(sshd):
    profile = sshd.profile(ssh={"user": "pi", "port": 2222, "identity_file": "~/.ssh/pi", "known_hosts": "~/kh"})
    cmd = SshTransport("pi", profile.ssh).ssh_command()
    assert cmd[:3] == ["ssh", "-F", str(sshd.client_config)]
    assert cmd[-2:] == ["--", "edgekd-loopback"]  # '--': a host can never be read as an option
    assert "BatchMode=yes" in cmd and os.path.expanduser("~/.ssh/pi") in cmd and "StrictHostKeyChecking=no" not in cmd
    assert shutil.which("ssh")

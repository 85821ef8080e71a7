"""The SSH transport: a Raspberry Pi or any Linux board, through the user's own OpenSSH client.

Calling the ``ssh`` executable (not a Python SSH library) means the user's setup just works: ~/.ssh/config aliases,
ProxyJump, keys in ssh-agent, known_hosts. Host keys are checked (BatchMode refuses unknown or changed keys instead of
asking); ``accept_new_host_key`` opts into trust-on-first-use. Files travel as ``cat > file`` over ssh, so there is no
scp/sftp quoting dialect to get wrong: every remote word is quoted with shlex.quote (``~/`` is kept expandable).

Connection refused, timeouts and dropped connections are retried a bounded number of times with doubling waits;
authentication and host-key failures are not (retrying cannot fix them). Errors are one line naming the device.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgekd.edge.profiles import SshSettings
from edgekd.edge.transports.base import Completed, TransportError

# ssh exits 255 for its own errors; the text tells which kind. Checked in this order.
_AUTH = ("Permission denied", "Too many authentication failures", "no mutual signature algorithm")
_HOST_KEY = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED")
_UNKNOWN_HOST = ("Could not resolve hostname", "Name or service not known")
_CONNECT = ("Connection refused", "Connection timed out", "Operation timed out", "No route to host",
            "Network is unreachable", "kex_exchange_identification", "banner exchange")  # fmt: skip
_DROPPED = ("closed by remote host", "Connection reset", "Broken pipe", "Timeout, server", "Connection closed",
            "lost connection", "client_loop: send disconnect")  # fmt: skip


def rquote(word: str) -> str:
    """shlex.quote for the remote shell, except that a leading ``~/`` still means the remote user's home."""
    if word == "~":
        return '"$HOME"'
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def _reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    return (lines[-1] if lines else "no message")[:300]


class SshTransport:
    """One device reached with ``ssh``; a temporary working directory under ``workdir`` for one session."""

    def __init__(
        self, name: str, settings: SshSettings, workdir: str = "/tmp", sleep: Callable[[float], None] = time.sleep
    ):
        self.name, self.settings, self.workdir, self._sleep = name, settings, workdir, sleep
        self._dir: str | None = None
        self._control: Path | None = None  # one multiplexed connection per session (see open())

    def ssh_command(self) -> list[str]:
        """``ssh`` with the profile's options; the remote command is appended as one quoted string."""
        s = self.settings
        cmd = ["ssh"]
        if s.ssh_config:
            cmd += ["-F", os.path.expanduser(s.ssh_config)]
        if s.port:
            cmd += ["-p", str(s.port)]
        if s.user:
            cmd += ["-l", s.user]
        if s.identity_file:
            cmd += ["-i", os.path.expanduser(s.identity_file), "-o", "IdentitiesOnly=yes"]
        if s.known_hosts:
            cmd += ["-o", f"UserKnownHostsFile={os.path.expanduser(s.known_hosts)}"]
        if s.accept_new_host_key:
            cmd += ["-o", "StrictHostKeyChecking=accept-new"]
        # Never prompt (there is no terminal to answer); notice a dead link within ~15 s instead of hanging.
        cmd += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={s.connect_timeout_s}"]
        cmd += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-T"]
        if self._control is not None:
            cmd += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}", "-o", "ControlPersist=120"]
        return [*cmd, "--", s.host]

    def _ssh(
        self, remote: str, timeout: float, stdin: Path | None = None, attempts: int | None = None
    ) -> tuple[int, bytes, str]:
        """Run ``remote`` (already quoted) on the device: (rc, stdout bytes, stderr text), retrying dropped links."""
        attempts = attempts or self.settings.retries
        for attempt in range(1, attempts + 1):
            try:
                with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fh:
                    proc = subprocess.run(
                        [*self.ssh_command(), remote], stdin=fh, capture_output=True, timeout=timeout, check=False
                    )
            except FileNotFoundError:
                msg = f"{self.name}: the ssh client is not installed (apt install openssh-client)"
                raise TransportError(msg, fatal=True) from None
            except subprocess.TimeoutExpired:
                raise TransportError(f"{self.name}: no answer from the device after {timeout:.0f} s") from None
            err = proc.stderr.decode(errors="replace")
            if proc.returncode != 255:
                return proc.returncode, proc.stdout, err
            self._raise_unless_retryable(err, attempt, attempts)
            self._sleep(self.settings.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # the last attempt raises in _raise_unless_retryable

    def _raise_unless_retryable(self, err: str, attempt: int, attempts: int) -> None:
        s, why = self.settings, _reason(err)
        where = f"{s.user + '@' if s.user else ''}{s.host}"
        if any(k in err for k in _AUTH):
            raise TransportError(
                f"{self.name}: authentication failed for {where} ({why}): check the user, the key "
                "(identity_file, ssh-agent) and the device's ~/.ssh/authorized_keys",
                fatal=True,
            )
        if any(k in err for k in _HOST_KEY):
            raise TransportError(
                f"{self.name}: host key of {where} is unknown or has changed ({why}): check it, then add it with "
                f"ssh {where} (or ssh-keygen -R to drop a stale one)",
                fatal=True,
            )
        if any(k in err for k in _UNKNOWN_HOST):
            raise TransportError(f"{self.name}: unknown host {s.host} ({why})", fatal=True)
        # A multiplexed session whose master connection died exits 255 with nothing (or a mux_client line) to say.
        dropped = any(k in err for k in _DROPPED) or not err.strip() or "mux_client" in err
        if not (dropped or any(k in err for k in _CONNECT)):
            raise TransportError(f"{self.name}: ssh to {where} failed: {why}", fatal=True)
        if attempt < attempts:
            return
        if dropped:
            why = why if err.strip() else "the connection closed without a message"
            tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
            raise TransportError(f"{self.name}: connection to {where} lost during the run ({tries}): {why}")
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        raise TransportError(f"{self.name}: cannot reach {where} after {tries}: {why}", fatal=True)

    def _check(self, rc: int, err: str, what: str) -> None:
        if rc != 0:
            raise TransportError(f"{self.name}: {what} failed on the device: {_reason(err)}")

    def open(self) -> None:
        # Every push/run/pull reuses one authenticated connection (OpenSSH multiplexing): a handshake costs
        # ~0.1-0.5 s on a Pi, and a session makes about ten calls. A dead master is replaced on the next call.
        self._control = Path(tempfile.mkdtemp(prefix="edgekd-ssh-")) / "mux"
        base = self.workdir.rstrip("/") or "/"
        remote = f"mkdir -p -- {rquote(base)} && mktemp -d {rquote(base + '/edgekd.XXXXXX')}"
        rc, out, err = self._ssh(remote, self.settings.connect_timeout_s + 60)
        self._check(rc, err, f"creating a temporary directory under {self.workdir}")
        self._dir = out.decode(errors="replace").strip().splitlines()[-1]

    def push(self, path: Path) -> str:
        target = self.scratch(path.name)
        rc, _, err = self._ssh(f"cat > {rquote(target)}", 600, stdin=path)
        self._check(rc, err, f"copying {path.name}")
        return target

    def scratch(self, name: str) -> str:
        assert self._dir is not None, "open() first"
        return f"{self._dir}/{name}"

    def run(self, argv: Sequence[str], timeout: float) -> Completed:
        assert self._dir is not None, "open() first"
        remote = f"cd {rquote(self._dir)} && " + " ".join(rquote(a) for a in argv)
        rc, out, err = self._ssh(remote, timeout)
        return Completed(rc, out.decode(errors="replace"), err)

    def pull(self, remote: str, local: Path) -> None:
        rc, out, err = self._ssh(f"cat {rquote(remote)}", 600)
        self._check(rc, err, f"fetching {Path(remote).name}")
        local.write_bytes(out)

    def close(self) -> None:
        if self._dir is not None:
            # One attempt: a device that just dropped off is not waited for; its /tmp is its own to clean.
            with contextlib.suppress(TransportError):
                self._ssh(f"rm -rf -- {rquote(self._dir)}", self.settings.connect_timeout_s + 30, attempts=1)
            self._dir = None
        if self._control is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                exit_cmd = [*self.ssh_command()[:-2], "-O", "exit", "--", self.settings.host]
                subprocess.run(exit_cmd, capture_output=True, timeout=10, check=False)
            shutil.rmtree(self._control.parent, ignore_errors=True)
            self._control = None

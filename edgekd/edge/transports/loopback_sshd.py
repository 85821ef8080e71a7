"""A throwaway OpenSSH server on 127.0.0.1: the real sshd the SSH transport is tested and timed against.

It runs as the current user (as root it may log in as root), on a free high port, with its own host key, client key,
known_hosts and an ssh_config alias in a temporary folder, so nothing of the user's ~/.ssh is read or written.
Used by tests/devices/conftest.py and benchmarks/ssh_loopback.py.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgekd.edge.profiles import DeviceProfile

ALIAS = "edgekd-loopback"


class SshdUnavailable(RuntimeError):
    """sshd cannot be started here; the message says why (not installed, refused to start...)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekd-test", "-f", str(path)], check=True)


@dataclass
class LoopbackSshd:
    root: Path
    port: int
    user: str
    proc: subprocess.Popen
    client_config: Path
    key: Path
    known_hosts: Path
    alias: str = ALIAS

    @classmethod
    def start(cls, root: Path, timeout: float = 10.0) -> LoopbackSshd:
        """Generate keys and configs under ``root``, start ``sshd -D`` and wait until a login works."""
        sshd = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None)
        if sshd is None or shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
            raise SshdUnavailable("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        user, port = getpass.getuser(), free_port()
        host_key, key = root / "host_ed25519", root / "id_ed25519"
        _keygen(host_key)
        _keygen(key)
        (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        (root / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root}/sshd.pid\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nAllowUsers {user}\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "StrictModes no\nUsePAM no\nMaxStartups 64\nMaxSessions 64\nLogLevel VERBOSE\n"
        )
        known_hosts = root / "known_hosts"
        host_pub = host_key.with_suffix(".pub").read_text().split()
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        client = root / "ssh_config"
        client.write_text(
            f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
        )
        if os.geteuid() == 0:  # sshd's privilege separation directory, which a container may lack
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = root / "sshd.log"
        proc = subprocess.Popen([sshd, "-D", "-f", str(root / "sshd_config"), "-E", str(log)], stdin=subprocess.DEVNULL)
        server = cls(root, port, user, proc, client, key, known_hosts)
        server._wait_ready(timeout, log)
        return server

    def _wait_ready(self, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
                raise SshdUnavailable(f"sshd exited with {self.proc.returncode}: {' | '.join(tail) or 'no log'}")
            probe = subprocess.run(["ssh", "-F", str(self.client_config), "-o", "BatchMode=yes", self.alias, "true"],
                                   capture_output=True, text=True, timeout=timeout)  # fmt: skip
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise SshdUnavailable(f"no ssh login to the test sshd within {timeout:.0f} s: {probe.stderr.strip()[-200:]}")

    def profile(self, name: str = "loopback", **fields) -> DeviceProfile:
        """An ssh device profile for this server (through the alias in its own ssh_config)."""
        ssh = {"host": self.alias, "ssh_config": str(self.client_config), **fields.pop("ssh", {})}
        doc = {"name": name, "transport": "ssh", "ssh": ssh, **fields}
        return DeviceProfile.model_validate(doc)

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener): killing one drops that connection."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

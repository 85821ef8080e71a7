"""Device profiles: where and how a model is measured (``devices/*.yaml``), validated like pipelines.

A profile names a transport (local, ssh, adb) and its connection, the runtimes the device has, threads, CPU affinity,
XNNPACK on/off and the working directory. ``--device NAME`` picks a shipped profile; a path to a YAML file picks the
user's own. Every profile shipped in ``devices/`` is registered by its file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edgekd.core.config import Strict
from edgekd.core.errors import ConfigError
from edgekd.core.registry import Registry
from edgekd.core.validation import _errors_from, parse_yaml_text
from edgekd.core.yamlfile import read_text
from edgekd.formats.runner import agent_path

Runtime = Literal["litert", "onnxruntime", "torch"]
DEFAULT_RUNTIMES: dict[str, list[str]] = {
    "local": ["torch", "onnxruntime", "litert"],
    "ssh": ["litert", "onnxruntime"],
    "adb": ["litert"],
}


class SshSettings(Strict):
    """OpenSSH client settings; anything left out comes from the user's ~/.ssh/config, as with a plain ``ssh``."""

    host: str = Field(description="host name, address or a Host alias from ~/.ssh/config")
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    ssh_config: str | None = Field(None, description="ssh_config file to use instead of ~/.ssh/config (ssh -F)")
    identity_file: str | None = Field(None, description="private key (ssh -i); default: ssh-agent and ~/.ssh/id_*")
    known_hosts: str | None = Field(None, description="known_hosts file (UserKnownHostsFile)")
    accept_new_host_key: bool = Field(False, description="trust an unknown host's key on first use (accept-new)")
    connect_timeout_s: int = Field(10, ge=1, le=300)
    retries: int = Field(3, ge=1, le=10, description="attempts on connection refused / timeout / disconnect")
    backoff_s: float = Field(1.0, ge=0, le=60, description="wait before the 2nd attempt, doubled each time")

    @field_validator("host", "user")
    @classmethod
    def _no_option(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or v.startswith("-") or any(c.isspace() for c in v)):
            raise ValueError(f"{v!r} is not a host or user name (empty, starts with '-' or has spaces)")
        return v


class AdbSettings(Strict):
    """Android over adb: TFLite's benchmark_model for latency/memory, the Python agent (if any) for accuracy."""

    serial: str | None = Field(None, description="adb -s SERIAL; default: the only connected device")
    adb: str = Field("adb", description="the adb executable")
    benchmark_model: str | None = Field(None, description="benchmark_model binary for the phone's ABI, on this host")
    op_profiling: bool = Field(False, description="add benchmark_model's per-operator profile to the rows")
    peak_memory: bool = Field(True, description="--report_peak_memory_footprint (benchmark_model >= 2.5)")


class DeviceProfile(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    transport: Literal["local", "ssh", "adb"]
    ssh: SshSettings | None = None
    adb: AdbSettings | None = None
    runtimes: list[Runtime] | None = Field(None, description="what the device can run; default by transport")
    python: str | None = Field(None, description="Python command on the device (local: this Python; adb: none)")
    threads: int | None = Field(None, ge=1, le=256, description="default: the benchmark stage's threads")
    cpu_affinity: list[int] | None = Field(None, description="CPU ids to pin to, e.g. [4, 5, 6, 7] (big cores)")
    xnnpack: bool = Field(True, description="LiteRT's XNNPACK delegate (the default CPU path); off: builtin kernels")
    workdir: str | None = Field(None, description="temporary directories are made here (/tmp; adb: /data/local/tmp)")
    timeout_s: float = Field(1800, gt=0, le=86_400, description="per model on the device")

    @field_validator("cpu_affinity")
    @classmethod
    def _cpus(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(c < 0 or c > 1023 for c in v)):
            raise ValueError("give one or more CPU ids between 0 and 1023")
        return sorted(set(v)) if v else v

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        for kind in ("ssh", "adb"):
            if self.transport == kind and getattr(self, kind) is None:
                raise ValueError(f"transport '{kind}' needs an '{kind}:' block")
            if self.transport != kind and getattr(self, kind) is not None:
                raise ValueError(f"an '{kind}:' block needs 'transport: {kind}' (this profile says {self.transport})")
        if self.runtimes is None:
            self.runtimes = list(DEFAULT_RUNTIMES[self.transport])
        if self.workdir is None:
            self.workdir = "/data/local/tmp" if self.transport == "adb" else "/tmp"
        if self.transport == "ssh" and self.python is None:
            self.python = "python3"
        if self.transport == "adb" and self.adb and not (self.adb.benchmark_model or self.python):
            raise ValueError("adb needs 'adb.benchmark_model' (latency) or 'python' (the agent on the phone), or both")
        return self

    def summary(self) -> dict:
        """The connection as shown in reports (no key paths)."""
        out: dict = {"transport": self.transport, "runtimes": self.runtimes}
        if self.ssh:
            out["host"] = f"{self.ssh.user + '@' if self.ssh.user else ''}{self.ssh.host}"
        if self.adb:
            out["serial"] = self.adb.serial
        return {**out, "threads": self.threads, "cpu_affinity": self.cpu_affinity, "xnnpack": self.xnnpack}


PROFILES: Registry[Path] = Registry("device profile")


def profiles_dir() -> Path:
    """The shipped profiles live next to the agent: ``devices/`` in the source tree."""
    return agent_path().parent


def _discover() -> None:
    if not PROFILES.names():
        for path in sorted(profiles_dir().glob("*.yaml")):
            PROFILES.register(path.stem)(path)


def known_profiles() -> list[str]:
    _discover()
    return PROFILES.names()


def _is_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref


def load_profile(ref: str | Path) -> DeviceProfile:
    """A shipped profile by name (``raspberry-pi-4``) or the user's own profile by path (``my-board.yaml``)."""
    ref = str(ref)
    if _is_path(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"device profile file '{ref}' does not exist (known profiles: {', '.join(known_profiles())})"
            )
    else:
        _discover()
        path = PROFILES.get(ref)
    doc, root = parse_yaml_text(read_text(path, "device profile"), str(path))  # bounded: edgekd.core.yamlfile
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a device profile must be a YAML mapping (transport, ssh/adb, threads, ...)")
    doc.setdefault("name", path.stem)
    try:
        return DeviceProfile.model_validate(doc)
    except ValidationError as exc:
        errors = _errors_from(exc, (), root, str(path), DeviceProfile)
        if len(errors) == 1:
            raise ConfigError(errors[0]) from None
        raise ConfigError(f"{len(errors)} errors in {path}:", errors) from None

"""Device profiles: every shipped one validates; unknown names list the known ones; user files fail at path:line."""

from __future__ import annotations

import pytest

from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.edge.profiles import DeviceProfile, known_profiles, load_profile

SHIPPED = {"local", "local-no-xnnpack", "raspberry-pi-4", "raspberry-pi-5", "android-arm64"}


def test_the_issue_s_profiles_ship():
    assert set(known_profiles()) >= SHIPPED


@pytest.mark.parametrize("name", known_profiles())
def test_shipped_profile_validates(name):
    profile = load_profile(name)
    assert profile.name == name and profile.runtimes and profile.workdir
    if profile.transport == "ssh":
        assert profile.ssh and profile.python and profile.threads == 4
    if profile.transport == "adb":
        assert profile.adb and profile.adb.benchmark_model and profile.cpu_affinity == [4, 5, 6, 7]


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown device profile 'raspbery-pi-4' \(did you mean 'raspberry-pi-4'\?\)"
                       r"; known: android-arm64, local, "):  # fmt: skip
        load_profile("raspbery-pi-4")


def test_user_profile_by_path_and_errors_at_their_line(tmp_path):
    good = tmp_path / "my-board.yaml"
    good.write_text("transport: ssh\nssh: {host: board.lan, user: me, port: 2222}\nthreads: 2\n")
    profile = load_profile(str(good))
    assert (profile.name, profile.ssh.port, profile.python, profile.workdir) == ("my-board", 2222, "python3", "/tmp")
    bad = tmp_path / "bad.yaml"
    bad.write_text("transport: ssh\nssh:\n  host: board.lan\n  prot: 22\nthreads: many\n")
    with pytest.raises(ConfigError) as err:
        load_profile(str(bad))
    assert "bad.yaml:4: ssh.prot: unknown key" in str(err.value) and "bad.yaml:5: threads:" in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"transport": "ssh"}, "transport 'ssh' needs an 'ssh:' block"),
        ({"transport": "local", "ssh": {"host": "pi"}}, "an 'ssh:' block needs 'transport: ssh'"),
        ({"transport": "ssh", "ssh": {"host": "-oProxyCommand=x"}}, "is not a host or user name"),
        ({"transport": "adb", "adb": {}}, "adb needs 'adb.benchmark_model'"),
        ({"transport": "local", "cpu_affinity": []}, "give one or more CPU ids"),
        ({"transport": "local", "runtimes": ["tensorrt"]}, "runtimes.0"),
    ],
)
def test_bad_profiles_are_refused(doc, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DeviceProfile.model_validate({"name": "x", **doc})


def test_pipeline_benchmark_devices_are_validated_before_running(tiny_doc):
    tiny_doc["stages"][4]["devices"] = ["local", "raspbery-pi-4"]
    with pytest.raises(ConfigError, match=r"stages\[4\]\.devices: .*unknown device profile 'raspbery-pi-4'"):
        validate_document(tiny_doc)
    tiny_doc["stages"][4]["devices"] = ["local", "raspberry-pi-4", "local"]
    with pytest.raises(ConfigError, match="each device may be listed once"):
        validate_document(tiny_doc)
    tiny_doc["stages"][4]["devices"] = ["local", "raspberry-pi-5"]
    cfg = validate_document(tiny_doc).stage("benchmark")
    # the profiles' content is part of the stage config, hence of its cache key: another host means a new run
    assert [p["name"] for p in cfg.model_dump()["device_profiles"]] == ["local", "raspberry-pi-5"]

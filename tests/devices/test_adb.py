"""The adb transport against STAND-INS: no phone exists on this machine.

``fake_adb`` (next to this file) plays adb and a phone whose file system is a temporary folder; ``fake_benchmark_model``
(written below) plays TFLite's benchmark_model by printing a real output sample from data/ and logging its flags.
What is real: the transport's commands and quoting, the parser, the Python agent (run "on the phone" with this
machine's Python when the profile gives one) and the rows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgekd.edge.profiles import DeviceProfile, load_profile
from edgekd.edge.transports.measure import measure_device, measure_devices

HERE = Path(__file__).parent
FAKE_ADB = HERE / "fake_adb"
SAMPLES = HERE / "data"


@pytest.fixture
def phone(tmp_path, monkeypatch) -> dict:
    """The stand-in phone: its root folder, stand-ins for getprop/taskset, a stand-in benchmark_model, call logs."""
    root = tmp_path / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    (root / "fakebin").mkdir()
    props = {"ro.product.manufacturer": "Google", "ro.product.model": "Pixel 8", "ro.soc.model": "Tensor G3",
             "ro.build.version.release": "14"}  # fmt: skip
    getprop = '#!/bin/sh\n# stand-in for Android\'s getprop\ncase "$1" in\n'
    getprop += "".join(f'  {k}) echo "{v}";;\n' for k, v in props.items()) + "  *) echo;;\nesac\n"
    (root / "fakebin/getprop").write_text(getprop)
    # stand-in for toybox taskset: records the mask, then runs the command (this machine may have fewer cores)
    (root / "fakebin/taskset").write_text('#!/bin/sh\necho "$1" > "$FAKE_ADB_ROOT/taskset_mask"\nshift\nexec "$@"\n')
    tool = tmp_path / "fake_benchmark_model"
    tool.write_text(
        "#!/bin/sh\n# stand-in for TFLite's benchmark_model: logs its flags, prints a recorded real output to stderr\n"
        'printf "%s\\n" "$@" > "$FAKE_ADB_ROOT/benchmark_model_args"\ncat "$FAKE_BM_SAMPLE" >&2\n'
        '[ "$FAKE_BM_EXIT" = 1 ] && exit 1\nexit 0\n'
    )
    for exe in (root / "fakebin/getprop", root / "fakebin/taskset", tool):
        exe.chmod(0o755)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "adb_calls.jsonl"))
    monkeypatch.setenv("FAKE_BM_SAMPLE", str(SAMPLES / "riscv64_mobilenet_v1_op_profiling.txt"))
    return {"root": root, "tool": tool, "log": tmp_path / "adb_calls.jsonl"}


def _profile(phone, **fields) -> DeviceProfile:
    adb = {"adb": str(FAKE_ADB), "serial": "FAKE0001", "benchmark_model": str(phone["tool"]), **fields.pop("adb", {})}
    doc = {"name": "pixel", "transport": "adb", "adb": adb, "threads": 4, "cpu_affinity": [4, 5, 6, 7], **fields}
    return DeviceProfile.model_validate(doc)


def test_benchmark_model_row_with_flags_taskset_and_op_profile(phone, tiny, variant, fast):
    profile = _profile(phone, xnnpack=False, adb={"op_profiling": True})
    res = measure_device(profile, [variant], tiny["data"], fast)
    row = res.rows[0]
    assert row["status"] == "ok", row["error"]
    assert row["measured_by"] == "benchmark_model" and row["device"] == "pixel"
    assert row["latency_ms"]["mean"] == pytest.approx(2950.34) and row["load_time_ms"] == pytest.approx(17.187)
    assert row["memory_footprint_mb"] == {"init": 4.21094, "overall": 46.0859}
    assert row["op_profile"]["by_node_type"][0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 2651.853,
                                                    "percent": 89.897}  # fmt: skip
    assert row["accuracy"] is None and "not measured on the device" in row["accuracy_note"]
    assert any("accuracy not measured on the device" in n for n in res.notes)
    # (the stand-in phone keeps its files under its root folder: map paths back to what the phone saw)
    args = (phone["root"] / "benchmark_model_args").read_text().replace(str(phone["root"]), "").split()
    assert {"--num_threads=4", "--use_xnnpack=false", "--enable_op_profiling=true", f"--warmup_runs={fast.warmup}",
            f"--num_runs={fast.runs}", "--report_peak_memory_footprint=true"} <= set(args)  # fmt: skip
    assert args[0].startswith("--graph=/data/local/tmp/edgekd.") and args[0].endswith("/tiny_cnn.tflite")
    assert (phone["root"] / "taskset_mask").read_text().strip() == "f0"  # cores 4-7
    assert res.facts == {"cpu_model": "Tensor G3", "board": "Google Pixel 8", "logical_cores": os.cpu_count(),
                         "os": "Android 14", "machine": os.uname().machine}  # fmt: skip
    assert not any((phone["root"] / "data/local/tmp").iterdir()), "the temporary directory on the phone is removed"
    calls = [json.loads(line) for line in phone["log"].read_text().splitlines()]
    assert sum(c[0] == "push" and c[1].endswith("fake_benchmark_model") for c in calls) == 1


def test_python_on_the_phone_adds_accuracy(phone, tiny, variant, fast):
    # The agent really runs "on the phone" (this machine's Python): pin to a core this machine has.
    res = measure_device(_profile(phone, python=sys.executable, cpu_affinity=[0]), [variant], tiny["data"], fast)
    row, local = res.rows[0], measure_device(load_profile("local"), [variant], tiny["data"], fast).rows[0]
    assert row["status"] == "ok" and row["measured_by"] == "benchmark_model"
    assert row["accuracy"] == local["accuracy"] and row["teacher_agreement"] == local["teacher_agreement"]
    assert "accuracy_note" not in row and "latencies_ms" not in row  # timings are benchmark_model's alone
    assert res.facts["board"] == "Google Pixel 8" and res.facts["python"]  # getprop facts + the agent's


def test_latency_only_on_the_phone_pushes_no_data_and_runs_no_agent(phone, variant, fast):
    for python in (None, sys.executable):  # with Python on the phone there is still no accuracy to measure
        res = measure_device(_profile(phone, python=python, cpu_affinity=[0]), [variant], None, fast)
        row = res.rows[0]
        assert row["status"] == "ok" and row["measured_by"] == "benchmark_model", row["error"]
        assert row["accuracy"] is None and "accuracy_note" not in row and res.notes == []
    pushed = [Path(c[1]).name for c in map(json.loads, phone["log"].read_text().splitlines()) if c[0] == "push"]
    assert sorted(pushed) == ["fake_benchmark_model", "fake_benchmark_model", "tiny_cnn.tflite", "tiny_cnn.tflite"]


def test_tool_failure_is_a_failed_row_with_its_reason(phone, tiny, variant, fast, monkeypatch):
    monkeypatch.setenv("FAKE_BM_SAMPLE", str(SAMPLES / "android_mi11_yolov5s_int8_nnapi_failed.txt"))
    monkeypatch.setenv("FAKE_BM_EXIT", "1")
    row = measure_device(_profile(phone), [variant], tiny["data"], fast).rows[0]
    assert row["status"] == "failed"
    assert row["error"].startswith("benchmark_model did not benchmark: Failed to apply NNAPI delegate.")
    assert "ANEURALNETWORKS_OP_FAILED" in row["error"] and "\n" not in row["error"]


@pytest.mark.parametrize(
    ("state", "message"),
    [("unauthorized", "accept the USB debugging prompt"), ("none", "no Android device is connected")],
)
def test_unusable_phone_fails_its_rows_and_the_other_device_is_kept(phone, tiny, variant, fast, monkeypatch,
                                                                    state, message):  # fmt: skip
    monkeypatch.setenv("FAKE_ADB_STATE", state)
    results = measure_devices([_profile(phone), load_profile("local")], [variant, variant], tiny["data"], fast)
    assert [r["status"] for r in results[0].rows] == ["failed", "failed"]
    assert all(message in r["error"] and r["error"].startswith("pixel: ") for r in results[0].rows)
    assert [r["status"] for r in results[1].rows] == ["ok", "ok"]


def test_missing_benchmark_model_and_missing_adb_are_one_line_errors(phone, tiny, variant, fast, tmp_path):
    row = measure_device(_profile(phone, adb={"benchmark_model": str(tmp_path / "nope")}), [variant], tiny["data"],
                         fast).rows[0]  # fmt: skip
    assert row["error"].startswith(f"pixel: benchmark_model not found at '{tmp_path / 'nope'}' (adb.benchmark_model)")
    row = measure_device(_profile(phone, adb={"adb": "/no/adb"}), [variant], tiny["data"], fast).rows[0]
    assert row["error"].startswith("pixel: adb not found ('/no/adb')")


def test_onnx_variants_are_left_out_with_a_note_on_a_litert_only_phone(phone, tiny, variant, fast):
    onnx = type(variant)("tiny/onnx-fp32", tiny["dir"] / "absent.onnx", tiny["meta"], "onnxruntime")
    res = measure_device(_profile(phone), [variant, onnx], tiny["data"], fast)
    assert [r["name"] for r in res.rows] == ["tiny/tflite-fp32"]
    assert any("not run (the profile's runtimes are litert): tiny/onnx-fp32" in n for n in res.notes)

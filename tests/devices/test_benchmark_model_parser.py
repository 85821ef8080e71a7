"""benchmark_model output parsing, on real outputs published by their authors (data/SOURCES.md says where from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.edge.transports.benchmark_model import BenchmarkModelError, parse_benchmark_model

DATA = Path(__file__).parent / "data"


def _parse(name: str) -> dict:
    return parse_benchmark_model((DATA / name).read_text())


def test_android_phone_output_with_peak_memory_footprint():
    r = _parse("android_mi11_yolov5s_fp32_cpu.txt")
    assert r["latency_ms"] == {"mean": 249.684, "std": 1.442, "p50": None, "p90": None, "p99": None,
                               "min": 247.067, "max": 254.474}  # fmt: skip
    assert (r["runs"], r["load_time_ms"], r["first_inference_ms"], r["warmup_avg_ms"]) == (50, 16.242, 360.262, 304.586)
    assert r["memory_footprint_mb"] == {"init": 4.92969, "overall": 138.809}
    assert r["throughput_ips"] == pytest.approx(4.01) and r["op_profile"] is None


def test_info_prefixed_lines_and_the_warmup_stats_line_is_not_taken_for_the_runs():
    r = _parse("linux_x86_mobilenet_v1_quant_info_prefix.txt")
    assert r["runs"] == 50 and r["latency_ms"]["min"] == pytest.approx(111.222)  # not the warm-up's count=5 line
    assert r["latency_ms"]["mean"] == pytest.approx(116.066) and r["load_time_ms"] == pytest.approx(0.53)
    assert r["memory_footprint_mb"] == {"init": 3.75, "overall": 12.1914}


def test_raspberry_pi_xnnpack_output():
    r = _parse("raspberrypi_yolo_int8_xnnpack.txt")
    assert r["xnnpack_applied"] and r["latency_ms"]["mean"] == pytest.approx(55.0432)
    assert r["latency_ms"]["std"] == pytest.approx(1.562)


def test_scientific_notation_and_op_profile():
    r = _parse("riscv64_mobilenet_v1_op_profiling.txt")
    assert r["latency_ms"]["mean"] == pytest.approx(2950.34) and r["warmup_avg_ms"] == pytest.approx(3512.39)
    by_type = r["op_profile"]["by_node_type"]
    types = ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "SQUEEZE"]
    assert [t["node_type"] for t in by_type] == types
    assert by_type[0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 2651.853, "percent": 89.897}
    assert sum(t["percent"] for t in by_type) == pytest.approx(100, abs=0.01)
    top = r["op_profile"]["top_nodes"]
    assert len(top) == 10 and top[0]["name"] == "[MobilenetV1/MobilenetV1/Conv2d_5_pointwise/Relu6]:10"
    assert top[0]["avg_ms"] == pytest.approx(277.374)  # the regular runs' table, not the initialisation one


def test_failed_run_raises_with_the_tool_s_reason():
    with pytest.raises(BenchmarkModelError) as err:
        _parse("android_mi11_yolov5s_int8_nnapi_failed.txt")
    msg = str(err.value)
    assert msg.startswith("benchmark_model did not benchmark: Failed to apply NNAPI delegate.")
    assert "ANEURALNETWORKS_OP_FAILED" in msg and "\n" not in msg


def test_logcat_prefix_and_empty_output():
    text = (DATA / "android_mi11_yolov5s_fp32_cpu.txt").read_text()
    logcat = "".join(f"05-31 10:31:13.022 21767 21767 I tflite  : {line}\n" for line in text.splitlines())
    assert parse_benchmark_model(logcat)["latency_ms"]["mean"] == pytest.approx(249.684)
    with pytest.raises(BenchmarkModelError, match="no output"):
        parse_benchmark_model("")

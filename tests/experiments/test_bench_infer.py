"""The inference benchmarks' code paths on tiny models (their numbers come from `evbattery bench ...`)."""

from __future__ import annotations

from pathlib import Path

from evbattery.core.devices import cpu_supports_bf16
from evbattery.experiments.bench_infer import bench_api, bench_infer
from evbattery.models.registry import discover_models


def test_bench_infer_times_torch_onnx_and_int8(model_dir: Path) -> None:
    res = bench_infer({"images": discover_models(model_dir)["images"]}, size=48, iters=3, warmup=1)
    rows = {(r["backend"], r["precision"]): r for r in res["results"]}
    torch_precision = "bf16" if cpu_supports_bf16() else "fp32"  # the Predictor autocasts where the CPU has bf16
    assert set(rows) == {("torch", torch_precision), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    for r in rows.values():
        assert 0 < r["p50_ms"] <= r["p99_ms"] and isinstance(r["meets_target"], bool)
    assert res["size"] == 48 and res["batch"] == 1


def test_bench_api_runs_both_services_on_int8(model_dir: Path, toy_dataset: Path) -> None:
    res = bench_api(model_dir, seconds=1.5, concurrency=2, backend="onnx-int8", data_dir=toy_dataset, size=48)
    assert res["int8_calibration"] == str(toy_dataset) and res["model_input_px"] == [48]
    for name in ("naive", "evbattery"):
        service = res["services"][name]
        assert service["requests"] > 0 and service["errors"] == 0, service
    assert res["rps_ratio"] > 0 and isinstance(res["p99_lower"], bool)

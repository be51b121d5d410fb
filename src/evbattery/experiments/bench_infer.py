"""Benchmarks: per-model inference latency (torch vs ONNX Runtime) and API throughput vs a naive service."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_P50_MS = 25.0


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50 / p99 / mean of a list of milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def _time(fn: Any, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def bench_infer(models: dict[str, Path], size: int = 224, iters: int = 50, warmup: int = 5,
                device: Any = None, onnx: bool | None = None,
                batch_sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Batch-1 latency per model at size x size: torch (the Predictor's fast path on `device`), ONNX Runtime fp32
    and int8 (CPU; by default only when the device is the CPU), and the torch Predictor's batch throughput.

    device: auto | cpu | cuda | cuda:N (None: EVBATTERY_DEVICE). Every timing is end to end: uint8 on the host
    in, float32 logits on the host out (a GPU's copies and synchronisation included). batch_sizes: batches
    whose throughput (img/s) is measured (default (64, 256) on CUDA, none on the CPU).
    The int8 model is calibrated on random images here: its latency does not depend on the calibration
    (its accuracy does; `evbattery export onnx --int8` calibrates on the dataset and reports agreement).
    """
    import torch

    from evbattery.core.devices import describe_device, is_cuda, resolve_device
    from evbattery.inference.export import export_onnx
    from evbattery.inference.predictor import Predictor
    from evbattery.inference.quantize import quantize_int8, random_calibration

    device = resolve_device(device)
    cuda = is_cuda(device)
    onnx = not cuda if onnx is None else onnx
    batch_sizes = ((64, 256) if cuda else ()) if batch_sizes is None else batch_sizes
    if cuda:
        torch.backends.cudnn.benchmark = True
    x = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    calib = random_calibration(size)
    results, throughput = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models.items():
            pred = Predictor.from_checkpoint(path, device=device)
            pred.image_size = size  # timing at the requested size, whatever the model was trained at
            results.append({"model": name, "backend": "torch", "device": str(device), "precision": pred.precision,
                            **percentiles(_time(lambda p=pred: p.logits(x), iters, warmup))})
            for b in batch_sizes:
                xb = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8)
                ms = _time(lambda p=pred, xb=xb: p.logits(xb), max(3, iters // 5), max(1, warmup))
                throughput.append({"model": name, "backend": "torch", "batch": b, "precision": pred.precision,
                                   "img_per_s": round(b / (float(np.median(ms)) / 1000.0), 1),
                                   "p50_batch_ms": percentiles(ms)["p50_ms"]})
            if not onnx:
                continue
            sized = _sized(path, size)
            fp32 = export_onnx(sized, Path(tmp) / f"{name}.onnx")
            variants = (("fp32", fp32), ("int8", quantize_int8(sized, Path(tmp) / f"{name}.int8.onnx", calib,
                                                               "random (latency only)", fp32_onnx=fp32)))
            for precision, onnx_path in variants:
                ort = Predictor.from_onnx(onnx_path)
                results.append({"model": name, "backend": "onnxruntime", "precision": precision,
                                **percentiles(_time(lambda p=ort: p.logits(x), iters, warmup))})
    for r in results:
        r["meets_target"] = r["p50_ms"] <= TARGET_P50_MS
    return {"size": size, "batch": 1, "iters": iters, "threads": torch.get_num_threads(),
            "device": describe_device(device), "target_p50_ms": TARGET_P50_MS, "results": results,
            "throughput": throughput}


def _sized(path: Path, size: int) -> Any:
    from evbattery.inference.predictor import Predictor

    pred = Predictor.from_checkpoint(path, fast=False, device="cpu")
    pred.image_size = size
    return pred


# -- API benchmark --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _payload(size: int = 640) -> tuple[bytes, bytes]:
    """A 640x640 JPEG photo with one cell-sized rectangle, and its mask (PNG)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = (128 + rng.normal(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[250:400, 220:420] = 255
    img[mask > 0] = (40, 90, 160)
    a, b = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(a, format="JPEG", quality=90)
    Image.fromarray(mask).save(b, format="PNG")
    return a.getvalue(), b.getvalue()


def _start(target: str, env: dict[str, str], timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{target} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{target} did not start within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _load(base: str, seconds: float, concurrency: int, photo: bytes, mask: bytes) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await client.post("/predict/both", files={"file": ("p.jpg", photo, "image/jpeg"),
                                                              "mask": ("m.png", mask, "image/png")})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000.0)
            else:
                errors += 1

    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.monotonic() - t0
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "rps": round(len(latencies) / elapsed, 3), **percentiles(latencies)}


def export_for_bench(models: dict[str, Path], out: Path, int8: bool, data_dir: Path | None) -> str | None:
    """fp32 (or int8) .onnx files of `models` in out; int8 calibrates on data_dir's train split if it exists.

    Returns what int8 was calibrated on (None for fp32).
    """
    from evbattery.inference.export import export_onnx
    from evbattery.inference.predictor import Predictor
    from evbattery.inference.quantize import calibration_images, int8_path, quantize_int8, random_calibration

    source = None
    for name, path in models.items():
        if not int8:
            export_onnx(path, out / f"{name}.onnx")
            continue
        pred = Predictor.from_checkpoint(path, fast=False, device="cpu")
        if data_dir is not None and (Path(data_dir) / "train").is_dir():
            calib, source = calibration_images(data_dir, pred.input_type, 32), str(data_dir)
        else:
            calib, source = random_calibration(pred.image_size), "random (no dataset)"
        quantize_int8(pred, int8_path(out, name), calib, source)
    return source


def resized_models(models: dict[str, Path], out: Path, size: int) -> dict[str, Path]:
    """Copies of the checkpoints whose metadata says `size` (ResNet-18 takes any input side)."""
    from evbattery.models.checkpoint import load_checkpoint, save_checkpoint
    from evbattery.models.registry import model_path

    copies = {}
    for name, path in models.items():
        ckpt = load_checkpoint(path)
        copies[name] = model_path(out, name)
        save_checkpoint(copies[name], ckpt["state_dict"], {**ckpt["meta"], "image_size": size})
    return copies


def bench_api(model_dir: Path, seconds: float = 30.0, concurrency: int = 8, backend: str | None = "onnx-int8",
              data_dir: Path | None = None, size: int | None = None, device: Any = None,
              max_batch: int | None = None) -> dict[str, Any]:
    """/predict/both under load: the naive service, then the evbattery service, one after the other.

    Both serve the same images and cutouts checkpoints (at `size` px if given, else as trained). The naive
    service stays the seed's (fp32 torch on the CPU, on the event loop). The evbattery service runs its torch
    models on `device` (auto | cpu | cuda | cuda:N; None: EVBATTERY_DEVICE): backend None means torch on a GPU
    and onnx-int8 on the CPU; an ONNX backend runs on the CPU, so it cannot be combined with a CUDA device.
    max_batch: the service's EVBATTERY_MAX_BATCH (None: its default on the CPU, 64 on a GPU).
    """
    from evbattery.core.devices import describe_device, is_cuda, resolve_device
    from evbattery.models.checkpoint import load_checkpoint
    from evbattery.models.registry import discover_models

    dev = resolve_device(device)
    cuda = is_cuda(dev)
    backend = backend or ("torch" if cuda else "onnx-int8")
    if cuda and backend.startswith("onnx"):
        raise RuntimeError(f"backend {backend} runs on the CPU (ONNX Runtime); with a CUDA device use backend torch")
    if max_batch is None and cuda:
        max_batch = 64

    found = {n: p for n, p in discover_models(model_dir).items() if n in ("images", "cutouts")}
    missing = [n for n in ("images", "cutouts") if n not in found]
    if missing:
        raise RuntimeError(f"{model_dir}: missing best_model_{missing[0]}.pth (bench api needs images and cutouts)")
    photo, mask = _payload()
    services = {}
    with tempfile.TemporaryDirectory() as tmp:
        if size is not None:
            model_dir = Path(tmp) / "model"
            found = resized_models(found, model_dir, size)
        sizes = sorted({int(load_checkpoint(p)["meta"]["image_size"]) for p in found.values()})
        env = {**os.environ, "EVBATTERY_MODEL_DIR": str(model_dir), "EVBATTERY_API_BACKEND": backend,
               "EVBATTERY_API_KEY": "", "EVBATTERY_ONNX_DIR": str(Path(tmp) / "onnx"), "EVBATTERY_DEVICE": str(dev)}
        if max_batch is not None:
            env["EVBATTERY_MAX_BATCH"] = str(max_batch)
        calibration = None
        if backend.startswith("onnx"):
            calibration = export_for_bench(found, Path(tmp) / "onnx", int8=backend == "onnx-int8", data_dir=data_dir)
        for label, target in (("naive", "evbattery.experiments.naive_service:app"), ("evbattery", "evbattery.api.app:app")):
            proc, base = _start(target, env)
            try:
                asyncio.run(_load(base, min(3.0, seconds), concurrency, photo, mask))  # warm-up
                services[label] = asyncio.run(_load(base, seconds, concurrency, photo, mask))
            finally:
                _stop(proc)
    ratio = services["evbattery"]["rps"] / max(services["naive"]["rps"], 1e-9)
    return {"endpoint": "/predict/both", "concurrency": concurrency, "seconds": seconds, "backend": backend,
            "device": describe_device(dev), "max_batch": max_batch,
            "int8_calibration": calibration, "model_input_px": sizes, "image": "640x640 JPEG + PNG mask",
            "services": services, "rps_ratio": round(ratio, 3), "target_ratio": 3.0,
            "p99_lower": services["evbattery"]["p99_ms"] < services["naive"]["p99_ms"]}

"""Where the tensors live: `--device auto|cpu|cuda|cuda:N` (and EVBATTERY_DEVICE), plus the few helpers every
device-aware path shares (bf16 autocast, channels_last, synchronising for timings, the bf16 matmul peak).

    device = resolve_device("auto")            # CUDA when there is one, else the CPU
    with autocast(device):                     # bf16 on CUDA and on CPUs with native bf16, else a no-op
        out = model(x.to(device))

`cuda` on a machine without a GPU raises DeviceError (a ValueError) with one line that says so and what to use
instead. Under torchrun, `auto` / `cuda` without an index mean cuda:LOCAL_RANK, so each rank takes its own GPU.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import torch

from evbattery.core.config import DEVICE_FORMS, DeviceError, check_device_spec, get_settings


def _default_spec() -> str:
    """EVBATTERY_DEVICE through the project's settings."""
    return get_settings().device


def _torch_build() -> str:
    return f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"


def _local_rank_index() -> int | None:
    """cuda index of this torchrun rank (LOCAL_RANK) when launched with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return None


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """auto | cpu | cuda | cuda:N (None: EVBATTERY_DEVICE, default auto) -> a usable torch.device.

    Raises DeviceError with one clear line for a malformed spec or a CUDA device that is not there.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    given = spec if spec is not None else _default_spec()
    s = check_device_spec(given)
    if s == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if s == "auto":
        if not available:
            return torch.device("cpu")
        s = "cuda"
    if not available:
        raise DeviceError(f"--device {given}: no CUDA device is available on this machine ({_torch_build()}); "
                          "use --device cpu or auto")
    count = torch.cuda.device_count()
    index = int(s.split(":")[1]) if ":" in s else _local_rank_index()
    index = 0 if index is None else index
    if index >= count:
        raise DeviceError(f"--device {given}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1}); "
                          "use one of those, cpu or auto")
    return torch.device("cuda", index)


def is_cuda(device: torch.device | str | None) -> bool:
    """True for a CUDA device."""
    return device is not None and torch.device(device).type == "cuda"


def describe_device(device: torch.device) -> str:
    """'cuda:0 (NVIDIA H200)' or 'cpu (2 threads)'."""
    if is_cuda(device):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX512-BF16 / AMX), where autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older torch or a build without oneDNN
        return False


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast pays off on the device: CUDA with bf16 (Ampere and later), or a CPU with native
    bf16 (on AVX2-only CPUs bf16 is ~20x slower than fp32)."""
    if is_cuda(device):
        return bool(torch.cuda.is_bf16_supported())
    return cpu_supports_bf16()


def autocast(device: torch.device | str, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device's type. enabled None: where bf16_supported(device); True/False forces it."""
    device = torch.device(device)
    on = bf16_supported(device) if enabled is None else bool(enabled)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def channels_last(obj: torch.Tensor | torch.nn.Module) -> torch.Tensor | torch.nn.Module:
    """A 4-D tensor or a model in channels_last memory format (other tensors unchanged)."""
    if isinstance(obj, torch.nn.Module):
        return obj.to(memory_format=torch.channels_last)
    return obj.contiguous(memory_format=torch.channels_last) if obj.ndim == 4 else obj


def sync(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU. Use around timings only."""
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


@contextlib.contextmanager
def timed(device: torch.device | str | None) -> Iterator[list[float]]:
    """`with timed(dev) as t: ...` -> t[0] = seconds, the device's queued work included."""
    out: list[float] = []
    sync(device)
    t0 = time.perf_counter()
    yield out
    sync(device)
    out.append(time.perf_counter() - t0)


def peak_bf16_matmul_tflops(device: torch.device | str, n: int | None = None, seconds: float = 1.0) -> float:
    """Best bf16 TFLOP/s of n x n matmuls on the device over a short burst (the MFU denominator).

    CUDA: n = 8192 by default, timed in groups of 10 matmuls between synchronisations; CPU: n = 1024, one at
    a time (bf16 there is only fast with native bf16; the number is what it is either way).
    """
    device = torch.device(device)
    cuda = is_cuda(device)
    n = n or (8192 if cuda else 1024)
    reps = 10 if cuda else 1
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):  # warm-up (cuBLAS heuristics, clocks)
        a @ b
    sync(device)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    return best


__all__ = ["DEVICE_FORMS", "DeviceError", "autocast", "bf16_supported", "channels_last", "check_device_spec",
           "cpu_supports_bf16", "describe_device", "is_cuda", "peak_bf16_matmul_tflops", "resolve_device", "sync",
           "timed"]

"""`evbattery bench train`: this project's training loop against the seed's naive loop, same data, same run.

Naive (the seed's recipe): batch 4, fp32, contiguous memory, decode the JPEG and resize every step,
no workers (on the bench's device). Ours: images decoded once (uint8 cache), training's DataLoader workers (none on 2 cores), batch
32, augmentation of whole batches, fused Adam, channels_last (+ bf16 only where the CPU has native bf16).
Beside both: the model's own step on a fixed in-memory batch, the ceiling of any data pipeline. The compute limit is measured here: peak matmul GFLOP/s in the
precision our loop runs in (bf16 where it autocasts to bf16, else fp32) divided by ResNet-18's FLOPs per
training image: 3 x 3.64 GFLOP x (size/224)^2 (forward, plus a backward pass that costs two forwards).

On CUDA (`device="cuda"`): the cache lives on the GPU and batches come from DeviceBatches (the training
loop's GPU path), bf16 autocast, fused Adam; the limit is the bf16 matmul peak measured on the same GPU in
the same run, so pct_of_limit is the loop's model FLOP utilisation (MFU), and loop_vs_model_step says how
much of the model's own fixed-batch step the whole loop keeps.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from evbattery.core.devices import (
    autocast,
    bf16_supported,
    describe_device,
    is_cuda,
    peak_bf16_matmul_tflops,
    resolve_device,
    sync,
    timed,
)
from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset
from evbattery.data.transforms import normalize, resize_uint8
from evbattery.training.config import DEFAULT_WORKERS
from evbattery.training.train import MEAN, STD, make_optimizer, train_one_epoch

# torchvision's model card says 1.81 "GFLOPS" for ResNet-18 at 224 px, which counts multiply-adds; one
# multiply-add is two floating-point operations, so a forward pass is 2 x 1.82 GFLOP.
RESNET18_GMAC_224 = 1.82
RESNET18_GFLOP_224 = 2 * RESNET18_GMAC_224


def train_gflop_per_image(size: int) -> float:
    """FLOPs of one ResNet-18 training image (forward + backward = 3 forwards), scaled by pixel count."""
    return 3 * RESNET18_GFLOP_224 * (size / 224) ** 2


def peak_matmul_gflops(n: int = 1024, seconds: float = 1.5, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of n x n matmuls in `dtype` over a short burst."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def naive_img_per_s(samples: list, size: int, steps: int, batch: int = 4, device: torch.device | None = None) -> float:
    """The seed's loop: decode + resize every step, fp32, batch 4, no workers (on `device`, default CPU)."""
    from torchvision.models import resnet18

    device = device or torch.device("cpu")
    model, crit = resnet18(weights=None, num_classes=3).to(device), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step(i: int) -> None:
        chunk = [samples[(i * batch + k) % len(samples)] for k in range(batch)]
        x = normalize(torch.stack([resize_uint8(load_rgb(s.image), size) for s in chunk]), MEAN, STD).to(device)
        y = torch.tensor([k % 3 for k in range(batch)], device=device)
        loss = crit(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(0)  # warm-up
    with timed(device) as t:
        for i in range(1, steps + 1):
            step(i)
    return steps * batch / t[0]


def model_step_img_per_s(size: int, steps: int, batch: int, bf16: bool, device: torch.device | None = None,
                         compile: bool = False) -> float:
    """The model's own training step on one fixed in-memory batch: no data, no augmentation; what the loop
    would reach with a free data pipeline (same device, precision, optimizer and compile setting)."""
    from evbattery.models.classifier import build_classifier

    device = device or torch.device("cpu")
    model, _ = build_classifier(3, "none")
    model = model.to(device).to(memory_format=torch.channels_last).train()
    opt, crit = make_optimizer(model, lr=1e-3), nn.CrossEntropyLoss()
    fwd = torch.compile(model) if compile else model
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % 3

    def step() -> None:
        with autocast(device, enabled=bf16):
            out = fwd(x)
        loss = crit(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3 if is_cuda(device) else 1):  # warm-up (cuDNN autotuning, compile)
        step()
    with timed(device) as t:
        for _ in range(steps):
            step()
    return steps * batch / t[0]


def fast_img_per_s(layout: DatasetLayout, size: int, steps: int, batch: int, workers: int,
                   device: torch.device | None = None, compile: bool = False) -> tuple[float, float, bool]:
    """This project's loop (cache + workers + channels_last + batched augmentation; on CUDA the cache on the
    GPU and DeviceBatches); returns (img/s, cache seconds, bf16). `steps` steps are timed, cycling over the
    split's images as often as needed (epochs of at most `steps` batches)."""
    from evbattery.data.augment import BatchAugment
    from evbattery.data.device_batches import DeviceBatches
    from evbattery.models.classifier import build_classifier

    device = device or torch.device("cpu")
    cuda = is_cuda(device)
    bf16 = bf16_supported(device)
    n_train = len(layout.require_split("train"))
    t0 = time.perf_counter()
    ds = CachedDataset(layout, "train", "images", size, train=True, limit=min(n_train, steps * batch),
                       batch_augment=True)
    if cuda:
        loader = DeviceBatches(ds, device, batch, shuffle=True, drop_last=True)
        warm = list(itertools.islice(iter(loader), 5))
    else:
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                            persistent_workers=workers > 0)
        warm = DataLoader(torch.utils.data.Subset(ds, range(min(batch, len(ds)))), batch_size=batch)
    sync(device)
    cache_s = time.perf_counter() - t0
    model, _ = build_classifier(len(ds.classes), "none")
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, lr=1e-3)
    fwd = torch.compile(model) if compile else model
    augment = BatchAugment("images")
    crit = nn.CrossEntropyLoss()
    # Warm-up: one pass (CPU: one batch) so cuDNN autotuning and compilation stay out of the timing.
    train_one_epoch(fwd, crit, opt, warm, 0, True, bf16, progress=False, augment=augment, device=device)
    per_epoch = len(loader)
    epochs = max(1, -(-steps // per_epoch))
    n_img, secs = 0.0, 0.0
    for e in range(epochs):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(e + 1)
        stats = train_one_epoch(fwd, crit, opt, loader, e, True, bf16, progress=False, augment=augment,
                                device=device)
        n = per_epoch * batch
        n_img, secs = n_img + n, secs + n / stats["img_per_s"]
    return n_img / secs, cache_s, bf16


def run_bench(data: Path, size: int = 128, steps: int = 8, batch_size: int = 32, workers: int = DEFAULT_WORKERS,
              device: str | torch.device | None = None, compile: bool = False) -> dict[str, Any]:
    """Measure both loops and the compute limit; returns the JSON-ready result.

    device: auto | cpu | cuda | cuda:N (None: EVBATTERY_DEVICE). On the CPU, `steps` is capped by the split
    (each timed image is a distinct photo); on CUDA the fast loop cycles over the split for `steps` steps, and
    the limit is the bf16 matmul peak measured on the GPU in this run: the result adds the model FLOP
    utilisation (MFU) of the loop and of the model's own fixed-batch step.
    """
    device = resolve_device(device)
    cuda = is_cuda(device)
    layout = DatasetLayout(data)
    samples = layout.require_split("train")
    if len(samples) < batch_size:
        raise ValueError(f"bench needs at least {batch_size} training images in {data}, found {len(samples)}")
    if not cuda:
        steps = max(1, min(steps, len(samples) // batch_size))
    if cuda:
        torch.backends.cudnn.benchmark = True
    naive = naive_img_per_s(samples, size, min(steps * 3, 60), device=device)
    fast, cache_s, bf16 = fast_img_per_s(layout, size, steps, batch_size, workers, device, compile)
    model_only = model_step_img_per_s(size, steps, batch_size, bf16, device, compile)
    flops_img = train_gflop_per_image(size)
    result: dict[str, Any] = {"device": describe_device(device), "size": size, "batch_size": batch_size,
                              "workers": workers, "steps": steps, "compile": compile,
                              "precision": ("bf16" if bf16 else "fp32") + "+channels_last"}
    if cuda:
        peak = 1000 * peak_bf16_matmul_tflops(device)  # GFLOP/s
        peak_fp32 = None
    else:
        # The limit is the peak of the arithmetic the fast loop actually runs (its convolutions are bf16 under
        # autocast); the fp32 peak is reported beside it for the naive loop.
        peak_fp32 = peak_matmul_gflops()
        peak = peak_matmul_gflops(dtype=torch.bfloat16) if bf16 else peak_fp32
    limit = peak / flops_img
    result.update({"naive_img_per_s": naive, "fast_img_per_s": fast, "speedup": fast / naive,
                   "cache_build_s": cache_s, "peak_gflops": peak, "peak_precision": "bf16" if bf16 or cuda else "fp32",
                   "peak_fp32_gflops": peak_fp32, "gflop_per_train_image": flops_img,
                   "limit_img_per_s": limit, "pct_of_limit": 100 * fast / limit,
                   "model_step_img_per_s": model_only, "model_step_pct_of_limit": 100 * model_only / limit,
                   "loop_vs_model_step": fast / model_only, "torch_threads": torch.get_num_threads()})
    if cuda:
        result.update({"peak_bf16_tflops": peak / 1000, "mfu_pct": 100 * fast / limit,
                       "model_step_mfu_pct": 100 * model_only / limit})
    return result

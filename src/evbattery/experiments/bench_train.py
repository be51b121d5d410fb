"""`evbattery bench train`: this project's training loop against the seed's naive loop, same data, same run.

Naive (the seed's recipe): batch 4, fp32, contiguous memory, decode the JPEG and resize every step,
no workers. Ours: images decoded once (uint8 cache), training's DataLoader workers (none on 2 cores), batch
32, augmentation of whole batches, fused Adam, channels_last (+ bf16 only where the CPU has native bf16).
Beside both: the model's own step on a fixed in-memory batch, the ceiling of any data pipeline. The compute limit is measured here: peak matmul GFLOP/s in the
precision our loop runs in (bf16 where it autocasts to bf16, else fp32) divided by ResNet-18's FLOPs per
training image: 3 x 3.64 GFLOP x (size/224)^2 (forward, plus a backward pass that costs two forwards).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

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


def naive_img_per_s(samples: list, size: int, steps: int, batch: int = 4) -> float:
    """The seed's loop: decode + resize every step, fp32, batch 4, no workers."""
    from torchvision.models import resnet18

    model, crit = resnet18(weights=None, num_classes=3), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step(i: int) -> None:
        chunk = [samples[(i * batch + k) % len(samples)] for k in range(batch)]
        x = normalize(torch.stack([resize_uint8(load_rgb(s.image), size) for s in chunk]), MEAN, STD)
        y = torch.tensor([k % 3 for k in range(batch)])
        loss = crit(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    return steps * batch / (time.perf_counter() - t0)


def model_step_img_per_s(size: int, steps: int, batch: int, bf16: bool) -> float:
    """The model's own training step on one fixed in-memory batch: no data, no augmentation; what the loop
    would reach with a free data pipeline."""
    from evbattery.models.classifier import build_classifier

    model, _ = build_classifier(3, "none")
    model = model.to(memory_format=torch.channels_last).train()
    opt, crit = make_optimizer(model, lr=1e-3), nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch) % 3

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = crit(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def fast_img_per_s(layout: DatasetLayout, size: int, steps: int, batch: int, workers: int) -> tuple[float, float, bool]:
    """This project's loop (cache + workers + channels_last + batched augmentation); returns (img/s, cache
    seconds, bf16)."""
    from evbattery.data.augment import BatchAugment
    from evbattery.inference.predictor import cpu_supports_bf16
    from evbattery.models.classifier import build_classifier

    bf16 = cpu_supports_bf16()
    t0 = time.perf_counter()
    ds = CachedDataset(layout, "train", "images", size, train=True, limit=steps * batch, batch_augment=True)
    cache_s = time.perf_counter() - t0
    model, _ = build_classifier(len(ds.classes), "none")
    model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, lr=1e-3)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    warm = DataLoader(torch.utils.data.Subset(ds, range(min(batch, len(ds)))), batch_size=batch)
    augment = BatchAugment("images")
    train_one_epoch(model, nn.CrossEntropyLoss(), opt, warm, 0, True, bf16, progress=False, augment=augment)
    stats = train_one_epoch(model, nn.CrossEntropyLoss(), opt, loader, 0, True, bf16, progress=False, augment=augment)
    return stats["img_per_s"], cache_s, bf16


def run_bench(data: Path, size: int = 128, steps: int = 8, batch_size: int = 32, workers: int = DEFAULT_WORKERS) -> dict[str, Any]:
    """Measure both loops and the compute limit; returns the JSON-ready result."""
    layout = DatasetLayout(data)
    samples = layout.require_split("train")
    if len(samples) < batch_size:
        raise ValueError(f"bench needs at least {batch_size} training images in {data}, found {len(samples)}")
    steps = max(1, min(steps, len(samples) // batch_size))
    naive = naive_img_per_s(samples, size, steps * 3)
    fast, cache_s, bf16 = fast_img_per_s(layout, size, steps, batch_size, workers)
    model_only = model_step_img_per_s(size, steps, batch_size, bf16)
    # The limit is the peak of the arithmetic the fast loop actually runs (its convolutions are bf16 under
    # autocast); the fp32 peak is reported beside it for the naive loop.
    peak_fp32 = peak_matmul_gflops()
    peak = peak_matmul_gflops(dtype=torch.bfloat16) if bf16 else peak_fp32
    flops_img = train_gflop_per_image(size)
    limit = peak / flops_img
    return {"size": size, "batch_size": batch_size, "workers": workers, "steps": steps,
            "precision": "bf16+channels_last" if bf16 else "fp32+channels_last",
            "naive_img_per_s": naive, "fast_img_per_s": fast, "speedup": fast / naive,
            "cache_build_s": cache_s, "peak_gflops": peak, "peak_precision": "bf16" if bf16 else "fp32",
            "peak_fp32_gflops": peak_fp32, "gflop_per_train_image": flops_img,
            "limit_img_per_s": limit, "pct_of_limit": 100 * fast / limit,
            "model_step_img_per_s": model_only, "model_step_pct_of_limit": 100 * model_only / limit,
            "loop_vs_model_step": fast / model_only, "torch_threads": torch.get_num_threads()}

"""`evbattery bench train`'s code path on the toy data (its numbers come from the command itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import resnet18

from evbattery.experiments.bench_train import run_bench, train_gflop_per_image


@pytest.mark.parametrize("size", [64, 128])
def test_flops_per_training_image_match_a_counted_forward_pass(size: int) -> None:
    # The compute limit divides peak GFLOP/s by this number; an earlier version took torchvision's
    # multiply-add count for FLOPs and put the limit 2x too high. Count the real forward pass instead.
    model = resnet18(num_classes=3).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    counted_forward = counter.get_total_flops() / 1e9
    assert train_gflop_per_image(size) / 3 == pytest.approx(counted_forward, rel=0.03)


@pytest.mark.slow
def test_bench_train_measures_both_loops_against_the_limit(toy_dataset: Path) -> None:
    res = run_bench(toy_dataset, size=32, steps=2, batch_size=8, workers=0)
    assert res["naive_img_per_s"] > 0 and res["fast_img_per_s"] > 0
    assert res["steps"] == 2 and res["size"] == 32
    # The limit is taken in the precision the fast loop runs in.
    assert res["peak_precision"] == ("bf16" if res["precision"].startswith("bf16") else "fp32")
    assert res["peak_gflops"] > 0 and res["gflop_per_train_image"] == train_gflop_per_image(32)
    assert res["model_step_img_per_s"] > 0
    assert res["loop_vs_model_step"] == pytest.approx(res["fast_img_per_s"] / res["model_step_img_per_s"])


def test_bench_train_needs_a_batch_of_training_images(toy_dataset: Path) -> None:
    with pytest.raises(ValueError, match="at least 64 training images"):
        run_bench(toy_dataset, size=32, steps=1, batch_size=64, workers=0)

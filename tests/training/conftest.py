"""Shared fixtures for the training tests: a tiny config and one trained (debiased) model."""

from __future__ import annotations

from pathlib import Path

import pytest

from evbattery.training.config import TrainConfig

SIZE = 32  # ResNet-18 runs at 32 px (layer4 is 1x1); keeps every training test to seconds


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a 2-core machine shared with other test runs, 2 OpenMP threads spin and
    run ~6x slower than 1 (measured); the setting is restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(data: Path, out: Path, **kw) -> TrainConfig:
    """A 1-epoch, 32-px, batch-8, no-tracker config writing under `out`."""
    base = {"data_dir": str(data), "model_dir": str(out / "model"), "runs_dir": str(out / "runs"), "epochs": 1,
            "batch_size": 8, "image_size": SIZE, "workers": 0, "tracker": "none", "pretrained": "none",
            "progress": False}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def debiased_run(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict]:
    """One epoch of bg-swap training on the toy data (the model the evaluation tests use)."""
    import torch

    from evbattery.training.train import main

    torch.set_num_threads(1)  # session fixtures run before the per-test thread fixture

    cfg = tiny_config(toy_dataset, tmp_path_factory.mktemp("debiased"), input_type="images", debias="bg-swap",
                      swap_prob=0.5, limit_train=24)
    return cfg, main(cfg)

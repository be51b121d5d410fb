"""Test-wide isolation: no network, caches and trackers inside tmp dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/toy_data.py importable from any sub-folder


# Fixtures that train a model or start a server: a test that uses one is slow (`pytest -m "not slow"` skips it).
SLOW_FIXTURES = {"model_dir", "debiased_run", "api_url", "live", "live_servers", "onnx_api_url", "int8_model_dir"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or "browser" in item.keywords:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("env")
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("MPLCONFIGDIR", "mpl"), ("WANDB_DIR", "wandb"),
                     ("TORCH_HOME", "torch")):
        os.environ[var] = str(base / sub)
    # Child processes (servers, CLIs) put their temp files here, so those a killed child leaves behind (wandb makes
    # two temp dirs at import) go with the session's tmp dir instead of piling up in /tmp.
    (base / "tmp").mkdir()
    os.environ["TMPDIR"] = str(base / "tmp")
    os.environ["WANDB_MODE"] = "disabled"
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, easy dataset (12 train / 6 val / 6 test per class, 64 px) shared read-only by tests."""
    from toy_data import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "processed")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a 2-core machine shared with other test runs, 2 OpenMP threads spin and
    run ~6x slower than 1 (measured); the setting is restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def debiased_run(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """One epoch of bg-swap training on the toy data (the model the evaluation tests use)."""
    import torch
    from toy_data import tiny_config

    from evbattery.training.train import main

    torch.set_num_threads(1)  # session fixtures run before the per-test thread fixture
    cfg = tiny_config(toy_dataset, tmp_path_factory.mktemp("debiased"), input_type="images", debias="bg-swap",
                      swap_prob=0.5, limit_train=24)
    return cfg, main(cfg)


@pytest.fixture(scope="session")
def model_dir(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best_model_{images,cutouts,images_debiased}.pth, 64 px, trained a few steps on the toy data."""
    from serving_models import tiny_model_dir

    return tiny_model_dir(toy_dataset, tmp_path_factory.mktemp("models"))

"""Test-wide isolation: no network, caches and trackers inside tmp dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/toy_data.py importable from any sub-folder


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("env")
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("MPLCONFIGDIR", "mpl"), ("WANDB_DIR", "wandb"),
                     ("TORCH_HOME", "torch")):
        os.environ[var] = str(base / sub)
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

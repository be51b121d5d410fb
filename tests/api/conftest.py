"""Fixtures: tiny trained checkpoints in a model folder (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_models import tiny_model_dir


@pytest.fixture(scope="session")
def model_dir(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best_model_{images,cutouts,images_debiased}.pth, 64 px, trained a few steps on the toy data."""
    return tiny_model_dir(toy_dataset, tmp_path_factory.mktemp("models"))

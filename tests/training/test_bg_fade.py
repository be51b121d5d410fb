"""Background fade-in: starts on the cutout, ends on the photo, never touches cell pixels; the schedule
reaches the training loop and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_data import tiny_config

from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset, fade_alpha, fade_background
from evbattery.training.config import TrainConfig


def test_fade_runs_from_cutout_to_photo_and_keeps_the_cell() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8, generator=g)
    mask = torch.zeros(24, 24, dtype=torch.uint8)
    mask[5:12, 8:20] = 255
    cell = mask >= 128
    cut = fade_background(img, mask, 0.0)
    assert np.array_equal(cut.permute(1, 2, 0).numpy(), make_cutout(img.permute(1, 2, 0).numpy(), mask.numpy()))
    assert torch.equal(fade_background(img, mask, 1.0), img)
    half = fade_background(img, mask, 0.5)
    assert torch.equal(half[:, cell], img[:, cell])
    expect = (img[:, ~cell].float() * 0.5).round().to(torch.uint8)  # the fill is black
    assert torch.equal(half[:, ~cell], expect)


def test_fade_schedule() -> None:
    assert [fade_alpha(e, 3) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert fade_alpha(0, 0) == 1.0


def test_dataset_fades_only_when_built_for_it(toy_dataset) -> None:
    layout = DatasetLayout(toy_dataset)
    ds = CachedDataset(layout, "train", "images", 32, train=True, bg_fade=True)
    ds.transform = None  # compare pixels without the random augmentation
    ds.set_bg_alpha(0.0)
    img, _ = ds[0]
    assert torch.equal(img, fade_background(ds.images[0], ds.masks[0], 0.0))
    assert not torch.equal(img, ds.images[0])
    ds.set_bg_alpha(1.0)
    assert torch.equal(ds[0][0], ds.images[0])
    plain = CachedDataset(layout, "train", "images", 32, train=True)
    with pytest.raises(ValueError, match="without bg_fade"):
        plain.set_bg_alpha(0.5)


def test_config_refuses_fade_for_cutouts_and_negative_epochs(tmp_path) -> None:
    with pytest.raises(ValueError, match="images only"):
        TrainConfig(input_type="cutouts", bg_fade_epochs=2)
    with pytest.raises(ValueError, match=">= 0"):
        TrainConfig(bg_fade_epochs=-1)


@pytest.mark.slow
def test_training_logs_the_fade_schedule(toy_dataset, tmp_path) -> None:
    from evbattery.training.train import main

    cfg = tiny_config(toy_dataset, tmp_path, epochs=3, bg_fade_epochs=2, limit_train=24, precise_bn=0)
    result = main(cfg)
    rows = [json.loads(line) for line in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [round(r["bg_alpha"], 4) for r in rows if "bg_alpha" in r] == [0.3333, 0.6667, 1.0]
    meta = torch.load(tmp_path / "model" / "best_model_images.pth", weights_only=True)["meta"]
    assert meta["config"]["bg_fade_epochs"] == 2

"""bg-swap keeps the cell and changes only background; the tracker's offline mode needs no network."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_data import SIZE

from evbattery.data import variants
from evbattery.data.layout import DatasetLayout


@pytest.fixture(scope="module")
def swap_ds(toy_dataset):
    from evbattery.data.loaders import CachedDataset

    return CachedDataset(DatasetLayout(toy_dataset), "train", "images", SIZE, train=True, swap_prob=1.0)


def test_photo_swap_keeps_cell_pixels_and_changes_only_background(swap_ds, monkeypatch):
    monkeypatch.setattr(swap_ds, "synth_share", 0.0)
    rng = np.random.default_rng(0)
    partners_classes = set()
    for i in (0, 13, 30):
        original = swap_ds.images[i].permute(1, 2, 0).numpy()
        mask = swap_ds.masks[i].numpy()
        out, info = swap_ds.swapped(i, rng)
        cell = variants.cell(mask)
        assert info.source == "photo" and info.partner != i
        partners_classes.add(int(swap_ds.labels[info.partner]))
        assert np.array_equal(out[cell], original[cell])  # the cell is untouched, pixel for pixel
        partner = swap_ds.images[info.partner].permute(1, 2, 0).numpy()
        expected_bg = variants.only_bg_t(partner, swap_ds.masks[info.partner].numpy())
        assert np.array_equal(out[~cell], expected_bg[~cell])  # background = partner's Only-BG-T
        assert (out[~cell] != original[~cell]).mean() > 0.5
        # no cell-shaped hole: the partner's own cell box is filled with its background tiles
        pcell = variants.cell(swap_ds.masks[info.partner].numpy()) & ~cell
        assert not np.array_equal(out[pcell], partner[pcell]) or not pcell.any()


def test_synthetic_swap_keeps_cell_pixels(swap_ds, monkeypatch):
    if swap_ds.synth is None:
        pytest.skip("synthetic background module not installed")
    monkeypatch.setattr(swap_ds, "synth_share", 1.0)
    original = swap_ds.images[5].permute(1, 2, 0).numpy()
    cell = variants.cell(swap_ds.masks[5].numpy())
    out, info = swap_ds.swapped(5, np.random.default_rng(1))
    assert info.source == "synthetic" and info.family in swap_ds.synth[1]
    assert out.shape == original.shape and np.array_equal(out[cell], original[cell])
    assert (out[~cell] != original[~cell]).mean() > 0.5


def test_synthetic_share_sets_where_the_backgrounds_come_from(toy_dataset):
    from evbattery.data.loaders import CachedDataset

    layout = DatasetLayout(toy_dataset)
    rng = np.random.default_rng(2)
    for share, expected in ((0.0, {"photo"}), (1.0, {"synthetic"})):
        ds = CachedDataset(layout, "train", "images", SIZE, train=True, swap_prob=1.0, synth_share=share, limit=6)
        assert {ds.swapped(i % 6, rng)[1].source for i in range(24)} == expected
    ds = CachedDataset(layout, "train", "images", SIZE, train=True, swap_prob=1.0, synth_share=0.5, limit=6)
    assert {ds.swapped(i % 6, rng)[1].source for i in range(60)} == {"photo", "synthetic"}


def test_getitem_with_swap_returns_augmented_uint8(swap_ds):
    x, y = swap_ds[3]
    assert x.dtype.is_floating_point is False and tuple(x.shape) == (3, SIZE, SIZE) and int(y) == 0


def test_offline_tracker_writes_offline_run_without_network(tmp_path, monkeypatch):
    from evbattery.core.tracking import Tracker, wandb_mode

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("EVBATTERY_WANDB", "online")  # wanted, but no key -> still offline
    monkeypatch.setenv("WANDB_MODE", "")
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "offline")
    t = Tracker(tmp_path / "runs", "run-1", {"lr": 0.001, "pretrained": "none"}, backend="wandb")
    assert t.mode == "offline" and t.run is not None
    t.log({"train/loss": 1.0, "val/acc": 0.5}, step=0)
    img = np.zeros((8, 8, 3), np.uint8)
    t.log_classification("val", [0, 1, 2], [0, 2, 2], ["a", "b", "c"],
                         {"a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}, [(img, 0, 0, 0.9)])
    t.finish()
    assert list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert json.loads((tmp_path / "runs/run-1/config.json").read_text())["lr"] == 0.001
    assert json.loads((tmp_path / "runs/run-1/metrics.jsonl").read_text().splitlines()[0])["val/acc"] == 0.5


def test_tracker_none_writes_only_files(tmp_path):
    from evbattery.core.tracking import Tracker

    t = Tracker(tmp_path, "r", {"a": 1}, backend="none")
    t.log({"x": 1.0}, step=3)
    t.finish()
    assert t.run is None and json.loads((tmp_path / "r/metrics.jsonl").read_text()) == {"step": 3, "x": 1.0}

"""The device-agnostic training path (issue 23), on the CPU: DeviceBatches (the GPU data path) reproduces the
per-sample work, training with device="cpu" is training as before, the new recipe options, and checkpoints
that load anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from toy_data import SIZE, tiny_config

from evbattery.data.device_batches import DeviceBatches, supports
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset
from evbattery.training.config import TrainConfig


def _ds(toy: Path, **kw) -> CachedDataset:
    return CachedDataset(DatasetLayout(toy), "train", kw.pop("kind", "images"), SIZE, train=True,
                         batch_augment=True, **kw)


def test_device_batches_cover_the_split_once_per_epoch_and_shard_under_ddp(toy_dataset: Path) -> None:
    ds = _ds(toy_dataset)
    it = DeviceBatches(ds, "cpu", 8, shuffle=True, drop_last=False, seed=1)
    seen = []
    for x, y in it:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, SIZE, SIZE) and y.dtype == torch.long
        seen.append(x)
    xs = torch.cat(seen)
    assert len(xs) == len(ds) and len(seen) == len(it)
    # every cached image exactly once (no swap: the batches are the cache, permuted)
    assert sorted(map(hash, (bytes(t.numpy()) for t in xs))) == sorted(map(hash, (bytes(t.numpy()) for t in ds.images)))
    a = [y for _, y in DeviceBatches(ds, "cpu", 8, seed=1)]
    b = [y for _, y in DeviceBatches(ds, "cpu", 8, seed=1)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))  # deterministic for a seed and epoch
    ranks = [DeviceBatches(ds, "cpu", 4, shuffle=True, drop_last=False, seed=1, rank=r, world_size=2) for r in (0, 1)]
    idx = [r._indices() for r in ranks]
    assert len(set(idx[0].tolist()) & set(idx[1].tolist())) == 0 and len(idx[0]) + len(idx[1]) == len(ds)


def test_device_bg_swap_keeps_the_cell_and_changes_the_background(toy_dataset: Path) -> None:
    ds = _ds(toy_dataset, swap_prob=1.0, synth_share=0.5)
    assert ds.masks is not None and supports(ds)
    it = DeviceBatches(ds, "cpu", len(ds), shuffle=False, drop_last=False, seed=0, bank=4)
    (x, y), = list(it)
    cell = (ds.masks >= 128)[:, None].expand_as(x)
    assert torch.equal(x[cell], ds.images[cell])  # cell pixels exactly kept
    changed = (x != ds.images).flatten(1).any(1)
    assert changed.float().mean() > 0.9  # (almost) every background replaced
    assert torch.equal(y, ds.labels)


def test_device_batches_masks_and_fade(toy_dataset: Path) -> None:
    seg = _ds(toy_dataset, kind="masks")
    x, m = next(iter(DeviceBatches(seg, "cpu", 8, seed=0)))
    assert m.dtype == torch.long and set(m.unique().tolist()) <= {0, 1} and m.shape == (8, SIZE, SIZE)
    fade = _ds(toy_dataset, bg_fade=True)
    fade.set_bg_alpha(0.0)  # alpha 0: exactly the cutout
    x, _ = next(iter(DeviceBatches(fade, "cpu", len(fade), shuffle=False, drop_last=False)))
    bg = (fade.masks < 128)[:, None].expand_as(x)
    assert (x[bg] == 0).all()
    assert not supports(_ds(toy_dataset, zoom_prob=0.5))  # the zoom crop stays on the DataLoader path


def test_recipe_options_are_validated() -> None:
    assert TrainConfig(batch_size=256, lr=1e-3, lr_scaling="sqrt").effective_lr == pytest.approx(1e-3 * 8 ** 0.5)
    assert TrainConfig(batch_size=64, lr=1e-3, lr_scaling="linear").effective_lr == pytest.approx(2e-3)
    assert TrainConfig(batch_size=64).effective_lr == 1e-3
    for bad, match in (({"optimizer": "sgd"}, "optimizer"), ({"label_smoothing": 1.0}, "label_smoothing"),
                       ({"lr_scaling": "cube"}, "lr_scaling"), ({"scheduler": "poly"}, "scheduler"),
                       ({"weight_decay": -1.0}, "weight_decay"), ({"warmup_pct": 0.0}, "warmup_pct")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


@pytest.mark.slow
def test_training_on_device_cpu_is_training_as_before(toy_dataset: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from evbattery.training.train import main

    monkeypatch.delenv("EVBATTERY_DEVICE", raising=False)
    kw = {"input_type": "cutouts", "limit_train": 16, "epochs": 2}
    a = main(tiny_config(toy_dataset, tmp_path / "a", **kw))
    b = main(tiny_config(toy_dataset, tmp_path / "b", device="cpu", **kw))
    strip = lambda h: [{k: v for k, v in r.items() if k != "train/img_per_s"} for r in h]
    assert strip(a["history"]) == strip(b["history"])
    sa = torch.load(a["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_the_gpu_data_path_trains_and_writes_device_independent_checkpoints(toy_dataset: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch of load_data (DeviceBatches, no DataLoader) driven on the CPU, with the full profile's
    recipe: AdamW, one-cycle per step, label smoothing, lr scaling, bg-swap."""
    from evbattery.data import device_batches
    from evbattery.training import train

    monkeypatch.setattr(train, "is_cuda", lambda device: True)
    used = []
    real = device_batches.DeviceBatches.__iter__

    def spy(self):
        used.append(self.ds.split)
        return real(self)

    monkeypatch.setattr(device_batches.DeviceBatches, "__iter__", spy)
    cfg = tiny_config(toy_dataset, tmp_path, input_type="images", debias="bg-swap", limit_train=24, epochs=2,
                      device="cpu", optimizer="adamw", weight_decay=0.05, label_smoothing=0.1,
                      scheduler="onecycle", lr_scaling="sqrt", batch_size=8)
    result = train.main(cfg)
    assert "train" in used and "val" in used
    assert [r["epoch"] for r in result["history"]] == [0, 1]
    assert result["history"][0]["lr"] == pytest.approx(cfg.effective_lr / 25)  # onecycle starts at max_lr / 25
    last = torch.load(Path(cfg.model_dir) / "last_images_debiased.pth", map_location="cpu", weights_only=True)
    states = [t for s in last["optimizer"]["state"].values() for t in s.values() if isinstance(t, torch.Tensor)]
    assert states and all(t.device.type == "cpu" for t in states)
    assert all(t.device.type == "cpu" for t in last["state_dict"].values())
    assert last["scheduler"]["total_steps"] == 2 * (24 // 8)
    from evbattery.inference.predictor import Predictor

    pred = Predictor.from_checkpoint(result["checkpoint"], device="cpu")
    assert pred.meta["config"]["device"] == "cpu" and pred.meta["config"]["optimizer"] == "adamw"

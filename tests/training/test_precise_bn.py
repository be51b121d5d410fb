"""Precise BN: after recalibration the BatchNorm running statistics equal the statistics of the
un-augmented training images (what evaluation will see), whatever they were before."""

from __future__ import annotations

import torch

from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset
from evbattery.data.transforms import normalize
from evbattery.models.classifier import build_classifier
from evbattery.training.train import MEAN, STD, recalibrate_bn


def test_recalibrated_stats_match_training_images(toy_dataset) -> None:
    torch.manual_seed(0)
    ds = CachedDataset(DatasetLayout(toy_dataset), "train", "images", 32)
    model, _ = build_classifier(3)
    # Stale statistics, as after fast-moving early epochs.
    model.bn1.running_mean.fill_(5.0)
    model.bn1.running_var.fill_(50.0)
    recalibrate_bn(model, ds, limit=len(ds), batch_size=8, fast=False)
    with torch.no_grad():
        act = model.conv1(normalize(ds.images, MEAN, STD))
    # update_bn averages per-batch means (the last batch is smaller): close to the pooled mean, vs 5.0 before.
    torch.testing.assert_close(model.bn1.running_mean, act.mean((0, 2, 3)), atol=0.01, rtol=0.01)
    # update_bn averages per-batch unbiased variances: close to the pooled variance, not exact.
    torch.testing.assert_close(model.bn1.running_var, act.var((0, 2, 3)), atol=0.05, rtol=0.05)


def test_zero_limit_leaves_stats_alone(toy_dataset) -> None:
    ds = CachedDataset(DatasetLayout(toy_dataset), "train", "images", 32)
    model, _ = build_classifier(3)
    model.bn1.running_mean.fill_(5.0)
    recalibrate_bn(model, ds, limit=0, batch_size=8, fast=False)
    assert torch.all(model.bn1.running_mean == 5.0)

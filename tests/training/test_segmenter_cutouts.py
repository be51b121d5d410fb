"""`--cutout-masks segmenter | both`: a cutout probe fitted on cutouts cut with a segmenter's masks, as photos
uploaded without a mask reach it (training/segmenter_cutouts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from known_models import write_colour_dataset
from torch import nn

from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset
from evbattery.data.transforms import pad_fill, resize_uint8
from evbattery.inference.segmenter import Segmenter
from evbattery.models.checkpoint import CheckpointError
from evbattery.training.config import TrainConfig
from evbattery.training.segmenter_cutouts import load_cutout_segmenter, probe_inputs


class ConstantSegmenter(nn.Module):
    """Every pixel is cell (cell=True) or none is: a segmenter whose masks are known exactly."""

    def __init__(self, cell: bool) -> None:
        super().__init__()
        self.sign = 1.0 if cell else -1.0
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, as every real network has

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        logits = torch.zeros(n, 2, h, w) + self.anchor
        logits[:, 1] += self.sign
        return {"out": logits}


def segmenter(cell: bool) -> Segmenter:
    return Segmenter(ConstantSegmenter(cell), {"image_size": 32}, device="cpu")


@pytest.fixture(scope="module")
def val_cutouts(tmp_path_factory: pytest.TempPathFactory) -> CachedDataset:
    data = write_colour_dataset(tmp_path_factory.mktemp("colour"), per_group=2, balanced=True, splits=("val",))
    return CachedDataset(DatasetLayout(data), "val", "cutouts", 40)


def test_true_masks_are_the_datasets_own_cutouts(val_cutouts: CachedDataset) -> None:
    images, labels = probe_inputs(val_cutouts, "true", None)
    assert images is val_cutouts.images and labels is val_cutouts.labels


def test_a_segmenter_that_marks_everything_cuts_out_the_whole_photo(val_cutouts: CachedDataset) -> None:
    images, labels = probe_inputs(val_cutouts, "segmenter", segmenter(cell=True))
    photos = torch.stack([resize_uint8(load_rgb(s.path("images")), 40, pad_fill("cutouts"))
                          for s in val_cutouts.samples])
    assert torch.equal(images, photos) and torch.equal(labels, val_cutouts.labels)
    assert not torch.equal(images, val_cutouts.images)  # the true cutouts hide the background


def test_a_segmenter_that_marks_nothing_leaves_only_the_fill(val_cutouts: CachedDataset) -> None:
    images, _ = probe_inputs(val_cutouts, "segmenter", segmenter(cell=False))
    fill = torch.tensor(pad_fill("cutouts"), dtype=torch.uint8)[:, None, None]
    assert torch.equal(images, fill.expand_as(images))


def test_both_puts_each_photo_in_twice(val_cutouts: CachedDataset) -> None:
    images, labels = probe_inputs(val_cutouts, "both", segmenter(cell=True))
    n = len(val_cutouts.samples)
    assert images.shape[0] == 2 * n and torch.equal(images[:n], val_cutouts.images)
    assert torch.equal(labels, torch.cat([val_cutouts.labels, val_cutouts.labels]))


def test_bad_modes_and_missing_segmenters_are_named(val_cutouts: CachedDataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected one of true, segmenter, both"):
        probe_inputs(val_cutouts, "guess", None)
    with pytest.raises(ValueError, match="needs a segmenter"):
        probe_inputs(val_cutouts, "both", None)
    with pytest.raises(CheckpointError, match=r"nope\.pth not found .*evbattery train -t masks"):
        load_cutout_segmenter(tmp_path / "nope.pth")
    for kw in ({"input_type": "images", "train_layers": "head"}, {"input_type": "cutouts", "train_layers": "all"}):
        with pytest.raises(ValueError, match="applies to cutout probes"):
            TrainConfig(cutout_masks="both", **kw)
    with pytest.raises(ValueError, match="cutout_masks 'some'"):
        TrainConfig(input_type="cutouts", train_layers="head", cutout_masks="some")


@pytest.mark.slow
def test_train_main_fits_the_probe_on_true_and_segmenter_cutouts(toy_dataset: Path, tmp_path: Path) -> None:
    """main() hands the probe the dataset's cutouts and the segmenter's, and says which segmenter it used."""
    from toy_data import tiny_config

    from evbattery.models.backbones import backbone_spec, classifier_head
    from evbattery.models.checkpoint import load_checkpoint
    from evbattery.models.classifier import build_classifier
    from evbattery.training.probe import fit_linear_probe
    from evbattery.training.train import main

    seg_run = main(tiny_config(toy_dataset, tmp_path / "seg", input_type="masks", limit_train=16))
    kw = {"input_type": "cutouts", "arch": "efficientnet_lite0", "pretrained": "auto", "train_layers": "head",
          "cutout_masks": "both", "image_size": 64, "probe_c": 0.05, "seed": 3}
    with pytest.raises(CheckpointError, match=r"segmenter\.pth not found"):  # <model_dir>/segmenter.pth by default
        main(tiny_config(toy_dataset, tmp_path / "none", **kw))
    result = main(tiny_config(toy_dataset, tmp_path / "probe", cutout_segmenter=seg_run["checkpoint"], **kw))
    saved = load_checkpoint(result["checkpoint"])
    seg = Segmenter.from_checkpoint(seg_run["checkpoint"], device="cpu")
    assert saved["meta"]["cutout_masks"] == {"mode": "both", "segmenter": seg_run["checkpoint"],
                                             "segmenter_created": seg.meta.get("created")}
    layout = DatasetLayout(toy_dataset)
    train_ds = CachedDataset(layout, "train", "cutouts", 64, train=True, seed=3)
    val_ds = CachedDataset(layout, "val", "cutouts", 64)
    model, _ = build_classifier(3, "auto", "avgpool", "efficientnet_lite0")
    spec = backbone_spec("efficientnet_lite0")
    head = classifier_head(model, "efficientnet_lite0")
    fit_linear_probe(model, head, *probe_inputs(train_ds, "both", seg), *probe_inputs(val_ds, "both", seg),
                     (list(spec.mean), list(spec.std)), 0.05, seed=3)
    # main's model runs channels_last: features agree to ~1e-3, a fit on other photos differs by far more
    for key, mine in (("classifier.weight", head.weight), ("classifier.bias", head.bias)):
        torch.testing.assert_close(saved["state_dict"][key], mine.detach(), rtol=1e-2, atol=2e-3)

"""Batched augmentation: flips / rotation / scale as one affine grid, colour jitter per image, masks aligned."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from evbattery.data.augment import BatchAugment
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset


def test_geometry_only_gives_the_four_flips_exactly() -> None:
    aug = BatchAugment("images", degrees=0, scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    out, _ = aug(x, generator=torch.Generator().manual_seed(0))
    seen = set()
    for a, b in zip(out, x.float(), strict=True):
        flips = {"none": b, "h": b.flip(-1), "v": b.flip(-2), "hv": b.flip(-1).flip(-2)}
        match = [k for k, f in flips.items() if torch.allclose(a, f, atol=1e-3)]
        assert match, "output is not a flip of its input"
        seen.add(match[0])
    assert seen == {"none", "h", "v", "hv"}


def test_rotation_and_scale_stay_in_their_ranges() -> None:
    th = BatchAugment("images").thetas(2000, torch.Generator().manual_seed(1))
    lin = th[:, :, :2]
    det = torch.linalg.det(lin).abs()                      # 1 / scale^2
    scale = det.rsqrt()
    assert scale.min() >= 0.9 - 1e-4 and scale.max() <= 1.1 + 1e-4 and scale.std() > 0.04
    # the first row is flip x (cos, sin) / scale: its angle, whatever the flip, is the rotation's
    ang = torch.rad2deg(torch.atan2(lin[:, 0, 1].abs(), lin[:, 0, 0].abs()))
    assert ang.max() <= 15 + 1e-3 and ang.max() > 13
    assert torch.equal(th[:, :, 2], torch.zeros(2000, 2))  # no translation: the cell never leaves the frame
    # rotating a single bright pixel about the centre keeps it at its radius
    x = torch.zeros(1, 3, 65, 65, dtype=torch.uint8)
    x[0, :, 32, 52] = 255                                  # 20 px right of the centre
    aug = BatchAugment("images", degrees=15, scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    for seed in range(5):
        out, _ = aug(x, generator=torch.Generator().manual_seed(seed))
        ys, xs = torch.nonzero(out[0, 0] > 60, as_tuple=True)
        r = math.hypot(float(ys.float().mean()) - 32, float(xs.float().mean()) - 32)
        assert abs(r - 20) < 1.5


def test_colour_jitter_keeps_black_black_and_grey_grey() -> None:
    aug = BatchAugment("cutouts", degrees=0, scale=(1.0, 1.0))
    x = torch.zeros(32, 3, 8, 8, dtype=torch.uint8)
    x[:, :, 2:6, 2:6] = torch.tensor([90, 160, 40], dtype=torch.uint8)[:, None, None]  # a coloured "cell"
    for r, c in ((0, 0), (0, 7), (7, 0), (7, 7)):
        x[:, :, r, c] = 128                                # grey corners: a flip maps a corner onto a corner
    out, _ = aug(x, generator=torch.Generator().manual_seed(0))
    assert out[:, :, 0, 3].abs().max() < 1e-3              # the cutout fill stays black
    grey = out[:, :, 0, 0]
    assert (grey.max(1).values - grey.min(1).values).max() < 0.5  # hue and saturation leave grey grey
    assert grey[:, 0].min() >= 128 * 0.8 - 1 and grey[:, 0].max() <= 128 * 1.2 + 1  # brightness +-20 %
    assert grey[:, 0].std() > 5                            # and it does vary between images
    cell = out[:, :, 3, 3]
    assert cell.std(0).min() > 1 and out.min() >= 0 and out.max() <= 255


def test_masks_follow_their_images_through_the_loop_augmentation(toy_dataset: Path) -> None:
    """The training loop's path: un-augmented cutouts + masks from the Dataset, augmented as a batch."""
    ds = CachedDataset(DatasetLayout(toy_dataset), "train", "cutouts", 64, train=True, mask_targets=True,
                       batch_augment=True)
    imgs = torch.stack([ds[i][0] for i in range(12)])
    masks = torch.stack([ds[i][2] for i in range(12)])
    assert torch.equal(imgs, ds.images[:12])               # the Dataset left them alone
    out, m = BatchAugment("cutouts")(imgs, masks, generator=torch.Generator().manual_seed(0))
    assert m.dtype == masks.dtype and set(m.unique().tolist()) <= {0, 1}
    grown = torch.nn.functional.max_pool2d(m[:, None].float(), 5, 1, 2)[:, 0] > 0
    lit = out.amax(1) > 40
    assert lit.any() and not (lit & ~grown).any()
    assert (m.sum((1, 2)) >= 0.75 * masks.sum((1, 2))).all()
    assert not torch.equal(out.round(), imgs.float())      # something was augmented


def test_rejects_a_batch_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        BatchAugment("images")(torch.zeros(3, 8, 8, dtype=torch.uint8))

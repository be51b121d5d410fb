"""A tiny, easy dataset written in the folder contract, for tests that need files fast.

Each class is a distinct filled shape on a noisy background (cylindrical: disc, pouch: wide bar,
prismatic: square), so a ResNet-18 learns it in a few epochs; masks are exact. The background
family (light / dark) is recorded per image, as the synthetic generator does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evbattery.core.config import CLASSES
from evbattery.core.imageio import load_rgb, save_jpeg, save_png
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetLayout

FAMILIES = ("light", "dark")


def toy_sample(cls: str, size: int, rng: np.random.Generator, family: str) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair of a class."""
    base = 170 if family == "light" else 70
    img = (base + rng.normal(0, 12, (size, size, 3))).clip(0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    s = size // 6 + int(rng.integers(0, size // 10 + 1))
    cy, cx = (int(v) for v in rng.integers(s + 2, size - s - 2, 2))
    if cls == "cylindrical":
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= s * s] = 255
    elif cls == "pouch":
        mask[max(cy - s // 3, 0):cy + s // 3, max(cx - s, 0):cx + s] = 255
    else:
        mask[cy - s:cy + s, cx - s:cx + s] = 255
    color = rng.integers(30, 226, 3)
    img[mask > 0] = color
    return img, mask


def make_toy_dataset(root: Path, n: tuple[int, int, int] = (12, 6, 6), size: int = 64, seed: int = 0) -> Path:
    """Write images/masks/cutouts for train/val/test and a dataset.json card; returns root."""
    layout = DatasetLayout(root)
    rng = np.random.default_rng(seed)
    meta = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        for cls in CLASSES:
            for i in range(count):
                family = FAMILIES[i % 2]
                img, mask = toy_sample(cls, size, rng, family)
                stem = f"{cls[:3]}_{split}_{i:03d}"
                image_path = layout.image_path(split, cls, stem)
                save_jpeg(img, image_path, quality=95)
                save_png(mask, layout.mask_path(split, cls, stem))
                # Cutouts from the stored JPEG, as every importer and the API make them.
                save_png(make_cutout(load_rgb(image_path), mask), layout.cutout_path(split, cls, stem))
                meta[f"{split}/{cls}/{stem}"] = {"class": cls, "background": family}
    layout.write_card({"source": {"kind": "toy", "seed": seed, "size": size}, "images": meta})
    return root


SIZE = 32  # ResNet-18 runs at 32 px (layer4 is 1x1); keeps every training test to seconds


def tiny_config(data: Path, out: Path, **kw):
    """A 1-epoch, 32-px, batch-8, no-tracker TrainConfig writing under `out`."""
    from evbattery.training.config import TrainConfig

    base = {"data_dir": str(data), "model_dir": str(out / "model"), "runs_dir": str(out / "runs"), "epochs": 1,
            "batch_size": 8, "image_size": SIZE, "workers": 0, "tracker": "none", "pretrained": "none",
            "progress": False}
    return TrainConfig(**{**base, **kw})

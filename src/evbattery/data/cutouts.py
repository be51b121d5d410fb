"""Cutouts: the photo with everything outside the cell mask replaced by CUTOUT_FILL.

The same function makes the training cutouts on disk and the cutouts the API builds at inference,
so the cutout model always sees cutouts made the way it was trained.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from evbattery.config import CUTOUT_FILL, MASK_THRESHOLD, SPLITS
from evbattery.data.layout import DatasetLayout
from evbattery.imageio import load_mask, load_rgb, save_png


def make_cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """image HxWx3 uint8, mask HxW (>= MASK_THRESHOLD is cell) -> HxWx3 uint8 cutout."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
                         f"{image.shape[1]}x{image.shape[0]}")
    # torch.where: ~5x faster than np.where here (numpy's broadcast over a 3-wide last axis is slow),
    # which matters in the API where every request makes one.
    keep = torch.from_numpy(np.asarray(mask) >= MASK_THRESHOLD)[:, :, None]
    fill = torch.tensor(CUTOUT_FILL, dtype=torch.uint8)
    image = np.asarray(image, dtype=np.uint8)
    # torch wants a writable array (PIL's are read-only); a copy costs ~0.1 ms at 640 x 640
    pixels = torch.from_numpy(image if image.flags.writeable and image.flags.c_contiguous else image.copy())
    return torch.where(keep, pixels, fill).numpy()


def write_cutouts(layout: DatasetLayout, splits: tuple[str, ...] = SPLITS, progress: bool = True) -> int:
    """(Re)make every cutout of the given splits from images and masks; returns how many were written."""
    samples = [s for split in splits for s in layout.samples(split)]
    n = 0
    for s in tqdm(samples, desc="cutouts", unit="img", disable=not progress):
        save_png(make_cutout(load_rgb(s.image), load_mask(s.mask)), s.cutout)
        n += 1
    return n

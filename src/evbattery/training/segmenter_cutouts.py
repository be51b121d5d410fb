"""Training cutouts cut with a segmenter's masks (`--cutout-masks segmenter | both`).

A photo uploaded without a mask reaches the cutout model as a cutout of the segmenter's predicted mask: holes
where the mask missed part of the cell, background where it bled. A model that only ever saw cutouts of the
dataset's true masks meets those errors first in use. On the recipe's data (3,000 synthetic photos, Lite0 probe,
the recipe's segmenter), cutouts of predicted masks in training raised its synthetic test accuracy through
predicted masks from 86.7 to 92.3 % ("both") and its real-photo dev score from 67.4 to 72.1 %; measured in
docs/benchmarks.md ("Real photos").
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from evbattery.core.imageio import load_rgb
from evbattery.data.cutouts import make_cutout
from evbattery.data.loaders import CachedDataset
from evbattery.data.transforms import pad_fill, resize_uint8
from evbattery.inference.cpu_onnx import attach_onnx_runtime
from evbattery.inference.segmenter import Segmenter
from evbattery.models.checkpoint import CheckpointError
from evbattery.training.config import CUTOUT_MASKS

BATCH = 16  # photos per segmenter call


def load_cutout_segmenter(path: Path, device: torch.device | None = None) -> Segmenter:
    """The segmenter that cuts the training cutouts; CheckpointError naming the path and the way to get one."""
    if not Path(path).is_file():
        raise CheckpointError(f"--cutout-masks needs a segmenter: {path} not found (train one first with "
                                f"`evbattery train -t masks`, or pass --cutout-segmenter PATH)")
    return Segmenter.from_checkpoint(path, device=device)


def segmenter_cutouts(ds: CachedDataset, segmenter: Segmenter, progress: bool = False) -> torch.Tensor:
    """(N,3,S,S) uint8: each photo of ds (a cutouts split, in its sample order) cut out with the segmenter's mask
    at the photo's own resolution, then letterboxed to ds's size as the dataset's cutouts are."""
    attach_onnx_runtime(segmenter, len(ds.samples))
    out = torch.empty((len(ds.samples), 3, ds.size, ds.size), dtype=torch.uint8)
    fill = pad_fill("cutouts")
    for start in tqdm(range(0, len(ds.samples), BATCH), desc=f"segmenter cutouts {ds.split}", unit="batch",
                      disable=not progress, leave=False):
        photos = [load_rgb(s.path("images")) for s in ds.samples[start:start + BATCH]]
        for k, (photo, mask) in enumerate(zip(photos, segmenter.predict_masks(photos), strict=True)):
            out[start + k] = resize_uint8(make_cutout(photo, mask), ds.size, fill)
    return out


def probe_inputs(ds: CachedDataset, mode: str, segmenter: Segmenter | None,
                 progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) a cutout probe is fitted or calibrated on: the dataset's true-mask cutouts ("true"), the
    segmenter's ("segmenter"), or both, each photo twice ("both")."""
    if mode not in CUTOUT_MASKS:
        raise ValueError(f"cutout_masks {mode!r}: expected one of {', '.join(CUTOUT_MASKS)}")
    if mode == "true":
        return ds.images, ds.labels
    if segmenter is None:
        raise ValueError(f"cutout_masks {mode!r} needs a segmenter")
    predicted = segmenter_cutouts(ds, segmenter, progress)
    if mode == "segmenter":
        return predicted, ds.labels
    return torch.cat([ds.images, predicted]), torch.cat([ds.labels, ds.labels])

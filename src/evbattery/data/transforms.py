"""The one preprocessing path: full frame -> letterboxed square (no crop, no squash) -> normalise.

A photo that is not square is scaled to fit the square and padded: squashing a 4:3 photo of an 18650 into a
square makes it look fatter, and the form factor is what the models tell apart. Measured with a linear probe on
ImageNet Lite0 features (3,000 synthetic photos, real-photo dev split): letterboxed 85 % balanced accuracy,
squashed 73 %, centre-cropped 61 % (docs/benchmarks.md, "Real photos"). Synthetic photos are square, so
training on them is unchanged.

Training caches `resize_uint8` output and augments it; evaluation, the CLI and the API call the
same two functions through the Predictor, so offline numbers are the API's numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from evbattery.core.config import CUTOUT_FILL


def hwc_view(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> 3xHxW uint8 tensor viewing the same (channels-last) memory."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    if not image.flags.writeable:  # arrays viewing PIL buffers are read-only; torch wants writable memory
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def to_uint8_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> contiguous 3xHxW uint8 tensor."""
    return hwc_view(image).contiguous()


# What pads a letterboxed photo: mid grey, about the normalisation mean of every backbone (0.5 for Lite0,
# ImageNet's 0.485/0.456/0.406 for ResNet-18), so the padding is near zero at the network's input. Cutouts pad
# with their own background, CUTOUT_FILL.
PAD_GREY: tuple[int, int, int] = (128, 128, 128)


def pad_fill(input_type: str) -> tuple[int, int, int]:
    """The letterbox padding for a model's input type: a cutout's own background, else mid grey."""
    return CUTOUT_FILL if input_type == "cutouts" else PAD_GREY


def letterbox_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where a height x width frame lands in a size x size letterbox: (top, left, h, w), the long side = size."""
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - h) // 2, (size - w) // 2, h, w


def resize_uint8(image: np.ndarray | torch.Tensor, size: int,
                 fill: Sequence[int] = PAD_GREY) -> torch.Tensor:
    """The whole frame, aspect ratio kept, in a size x size square padded with `fill` (bilinear, antialiased);
    keeps uint8. Contiguous 3xSxS."""
    t = hwc_view(image) if isinstance(image, np.ndarray) else image
    if t.shape[-2:] == (size, size):
        return t.contiguous()
    top, left, h, w = letterbox_box(t.shape[-2], t.shape[-1], size)
    # Resized as a channels-last batch of one: torch's AVX2 uint8 kernel takes that layout and is ~5x
    # faster than on a 3xHxW contiguous tensor, with identical output.
    inner = F.resize(t[None].contiguous(memory_format=torch.channels_last), [h, w],
                     interpolation=F.InterpolationMode.BILINEAR, antialias=True)[0]
    if (h, w) == (size, size):
        return inner.contiguous()
    out = torch.empty((t.shape[0], size, size), dtype=torch.uint8)
    out[:] = torch.tensor(list(fill), dtype=torch.uint8).view(-1, 1, 1)
    out[:, top:top + h, left:left + w] = inner
    return out


def resize_mask(mask: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """HxW uint8 mask -> SxS uint8 tensor letterboxed like its photo (nearest, stays 0/255; padding 0)."""
    t = (torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else mask)[None]
    if t.shape[-2:] == (size, size):
        return t[0].contiguous()
    top, left, h, w = letterbox_box(t.shape[-2], t.shape[-1], size)
    out = torch.zeros((size, size), dtype=t.dtype)
    out[top:top + h, left:left + w] = F.resize(t, [h, w], interpolation=F.InterpolationMode.NEAREST)[0]
    return out


def unletterbox_mask(square: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An SxS mask predicted on a letterboxed photo -> the photo's own height x width (nearest)."""
    top, left, h, w = letterbox_box(height, width, square.shape[-1])
    inner = square[..., top:top + h, left:left + w]
    return F.resize(inner[None], [height, width], interpolation=F.InterpolationMode.NEAREST)[0]


@functools.lru_cache(maxsize=32)
def _stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as (C,1,1) float32 tensors on the device, made once per device: a fresh host-to-GPU copy
    every batch would block the host until the GPU's queue drains."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1).to(device)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1).to(device)
    return m, s


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N,3,H,W) or (3,H,W) -> float32 normalised with mean/std (ImageNet by default), on the batch's
    device."""
    x = batch.float().div_(255.0)
    m, s = _stats(tuple(float(v) for v in mean), tuple(float(v) for v in std), x.device)
    return (x - m) / s

"""The one preprocessing path: full frame -> square resize (no crop) -> normalise.

Training caches `resize_uint8` output and augments it; evaluation, the CLI and the API call the
same two functions through the Predictor, so offline numbers are the API's numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F


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


def resize_uint8(image: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Resize the whole frame to size x size (bilinear, antialiased); keeps uint8. Contiguous 3xSxS."""
    t = hwc_view(image) if isinstance(image, np.ndarray) else image
    if t.shape[-2:] == (size, size):
        return t.contiguous()
    # Resized as a channels-last batch of one: torch's AVX2 uint8 kernel takes that layout and is ~5x
    # faster than on a 3xHxW contiguous tensor, with identical output.
    out = F.resize(t[None].contiguous(memory_format=torch.channels_last), [size, size],
                   interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    return out[0].contiguous()


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

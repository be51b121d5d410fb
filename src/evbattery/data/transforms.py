"""The one preprocessing path: full frame -> square resize (no crop) -> normalise.

Training caches `resize_uint8` output and augments it; evaluation, the CLI and the API call the
same two functions through the Predictor, so offline numbers are the API's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F


def to_uint8_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> 3xHxW uint8 tensor."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    if not image.flags.writeable:  # arrays viewing PIL buffers are read-only; torch wants writable memory
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def resize_uint8(image: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Resize the whole frame to size x size (bilinear, antialiased); keeps uint8. Shape 3xSxS."""
    t = to_uint8_tensor(image) if isinstance(image, np.ndarray) else image
    if t.shape[-2:] == (size, size):
        return t
    return F.resize(t, [size, size], interpolation=F.InterpolationMode.BILINEAR, antialias=True)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N,3,H,W) or (3,H,W) -> float32 normalised with mean/std (ImageNet by default)."""
    x = batch.float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (x - m) / s

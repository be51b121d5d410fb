"""Corrupted copies of photos: a stand-in for the shift from synthetic to real photos when fitting a confidence.

A probe's temperature fitted on clean synthetic val photos makes it sure of itself on photos it has never seen the
like of: on the real-photo dev split the recipe's image probe answered wrong at 0.94-0.99. Fitted on val photos
with a random corruption each (Tomani et al., "Post-hoc uncertainty calibration for domain drift scenarios", CVPR
2021), it is calibrated for a world that differs from the training photos in ways nobody enumerated. Each copy gets
one corruption, drawn uniformly from CORRUPTIONS, at a strength drawn uniformly from [0.3, 1].
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

GREY = [128.0, 128.0, 128.0]


def _jpeg(x: torch.Tensor, s: float, _g: torch.Generator) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=round(40 - 30 * s))
    return torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1)


def _noise(x: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    noisy = x.float() + torch.randn(x.shape, generator=g) * (10 + 30 * s)
    return noisy.round().clamp(0, 255).to(torch.uint8)


def _zoom(x: torch.Tensor, s: float, g: torch.Generator) -> torch.Tensor:
    """A crop of (1 - s / 2) of the area at a random place, scaled back to the photo's size."""
    h, w = x.shape[-2:]
    f = (1 - 0.5 * s) ** 0.5
    ch, cw = max(1, int(h * f)), max(1, int(w * f))
    top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
    return F.resized_crop(x, top, left, ch, cw, [h, w], antialias=True)


def _sign(g: torch.Generator) -> float:
    return 1.0 if torch.rand(1, generator=g).item() < 0.5 else -1.0


CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "blur": lambda x, s, g: F.gaussian_blur(x, [2 * int(1 + 4 * s) + 1] * 2, [1 + 3 * s] * 2),
    "jpeg": _jpeg,
    "noise": _noise,
    "contrast": lambda x, s, g: F.adjust_contrast(x, 1 - 0.6 * s),
    "desaturate": lambda x, s, g: F.adjust_saturation(x, 1 - s),
    "hue": lambda x, s, g: F.adjust_hue(x, 0.5 * s * _sign(g)),
    "zoom": _zoom,
    "rotate": lambda x, s, g: F.rotate(x, 45 * s * _sign(g), fill=GREY),
}


def corrupted_copies(images: torch.Tensor, copies: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,3,H,W) uint8 -> (N*copies,3,H,W) uint8 and, for each copy, the index of its source photo.

    Copy k of photo i (row k*N + i) has one corruption of CORRUPTIONS at strength U(0.3, 1); the same seed gives
    the same copies."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected (N,3,H,W) uint8 photos, got {tuple(images.shape)} {images.dtype}")
    g = torch.Generator().manual_seed(seed)
    kinds = list(CORRUPTIONS.values())
    out, source = [], []
    for _ in range(copies):
        for i, x in enumerate(images.cpu()):
            kind = kinds[int(torch.randint(0, len(kinds), (1,), generator=g))]
            strength = 0.3 + 0.7 * torch.rand(1, generator=g).item()
            out.append(kind(x, strength, g))
            source.append(i)
    if not out:
        return images[:0].cpu(), torch.zeros(0, dtype=torch.long)
    return torch.stack(out), torch.tensor(source)

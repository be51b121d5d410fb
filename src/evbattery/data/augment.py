"""Train-only augmentation of a whole batch at once, in the training loop (the default; `--no-batch-augment`
goes back to torchvision v2 per sample in the Dataset, `loaders.augmentation`).

The same distribution as the per-sample pipeline: horizontal and vertical flips, rotation within +-15 deg
and scale within 0.9-1.1 about the centre with a black fill (no translation or crop, so a small off-centre
cell never leaves the frame), then brightness, contrast and saturation within +-20 % and hue within +-0.02
turns (a rotation of the YIQ chroma plane). Cutouts get no contrast jitter, which would lift their black
fill; every other step keeps black black. Flips, rotation and scale are one affine matrix per image and
one `grid_sample` for the batch; masks (segmentation targets, the mask-attention head's targets) go
through the same grid with nearest sampling, so they stay aligned with their images.

Why: on 2 cores the per-sample v2 pipeline runs in the main process between training steps (DataLoader
workers would compete with the compute threads), ~5 ms per 128-px image; the batched form does the
same work as a few large tensor operations.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F

# RGB -> YIQ and back (NTSC); a hue shift is a rotation of the (I, Q) plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)
_GREY = torch.tensor([0.299, 0.587, 0.114])


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device | None = None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


@functools.lru_cache(maxsize=8)
def _consts(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(RGB->YIQ, YIQ->RGB, grey weights) on the device, copied there once (not every batch)."""
    return _RGB2YIQ.to(device), _YIQ2RGB.to(device), _GREY.to(device)


class BatchAugment:
    """Augment (N,3,S,S) uint8 images (and optionally (N,S,S) masks) -> float32 images in [0, 255], masks.

    Runs on the images' device (random draws included: a generator must be on that device too), so a batch
    held on the GPU is augmented there with no host round trip.
    """

    def __init__(self, kind: str, degrees: float = 15.0, scale: tuple[float, float] = (0.9, 1.1),
                 brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.02) -> None:
        self.degrees, self.scale = degrees, scale
        self.brightness, self.saturation, self.hue = brightness, saturation, hue
        self.contrast = 0.0 if kind == "cutouts" else contrast

    def thetas(self, n: int, g: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        """(N,2,3) affine_grid matrices: output pixel -> input pixel, in normalised coordinates."""
        ang = _uniform(n, -self.degrees, self.degrees, g, device) * math.pi / 180
        s = _uniform(n, *self.scale, g, device)
        fx = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
        fy = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
        # Sampling grid of "flip, then rotate by ang and scale by s": the inverse map, R(-ang) / s, then the flip.
        c, si = torch.cos(ang) / s, torch.sin(ang) / s
        zero = torch.zeros(n, device=device)
        return torch.stack([torch.stack([fx * c, fx * si, zero], 1),
                            torch.stack([-fy * si, fy * c, zero], 1)], 1)

    def colour(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """Per-image brightness, contrast, saturation and hue jitter of float (N,3,H,W) in [0, 255]."""
        n, dev = x.shape[0], x.device
        rgb2yiq, yiq2rgb, grey_w = _consts(dev)
        shape = (n, 1, 1, 1)
        x = (x * _uniform(n, 1 - self.brightness, 1 + self.brightness, g, dev).view(shape)).clamp_(0, 255)
        grey = torch.einsum("nchw,c->nhw", x, grey_w)[:, None]
        if self.contrast:
            m = grey.mean((2, 3), keepdim=True)
            f = _uniform(n, 1 - self.contrast, 1 + self.contrast, g, dev).view(shape)
            x = ((x - m) * f + m).clamp_(0, 255)
            grey = torch.einsum("nchw,c->nhw", x, grey_w)[:, None]
        f = _uniform(n, 1 - self.saturation, 1 + self.saturation, g, dev).view(shape)
        x = ((x - grey) * f + grey).clamp_(0, 255)
        if self.hue:
            a = _uniform(n, -self.hue, self.hue, g, dev) * 2 * math.pi
            c, s = torch.cos(a), torch.sin(a)
            rot = torch.zeros(n, 3, 3, device=dev)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
            m = yiq2rgb @ rot @ rgb2yiq                        # (N,3,3), per image
            x = torch.einsum("nij,njhw->nihw", m, x).clamp_(0, 255)
        return x

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected an (N,3,H,W) batch, got {tuple(images.shape)}")
        n = images.shape[0]
        grid = F.affine_grid(self.thetas(n, generator, images.device), list(images.shape), align_corners=False)
        x = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = self.colour(x, generator)
        if masks is not None:
            m = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
            masks = m[:, 0].round().to(masks.dtype)
        return x, masks

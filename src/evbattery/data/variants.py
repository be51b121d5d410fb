"""Background-Challenge image variants (Xiao et al. 2020, "Noise or Signal", ImageNet-9).

Per-image functions on HxWx3 uint8 photos and HxW uint8 masks (>= MASK_THRESHOLD is cell):

  original    the photo
  only_fg     the cutout (cell on CUTOUT_FILL)
  no_fg       the cell blacked out
  only_bg_t   the cell's bounding box filled with tiles of background from the same photo
  mixed       the cell pasted (same position) onto another photo's Only-BG-T background;
              Mixed-Same / Mixed-Rand / Mixed-Next differ only in which photo gives the background.

The same `mixed` is the bg-swap augmentation of background-randomised training.
"""

from __future__ import annotations

import numpy as np

from evbattery.core.config import MASK_THRESHOLD
from evbattery.data.cutouts import make_cutout

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def cell(mask: np.ndarray) -> np.ndarray:
    """Boolean HxW: True where the mask marks the cell."""
    return mask >= MASK_THRESHOLD


def bounding_box(mask: np.ndarray) -> Box | None:
    """Tight box around the mask's cell pixels, or None for an empty mask."""
    ys, xs = np.nonzero(cell(mask))
    if len(ys) == 0:
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def only_fg(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Only-FG: the cutout."""
    return make_cutout(image, mask)


def no_fg(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """No-FG: cell pixels set to black, background untouched."""
    out = image.copy()
    out[cell(mask)] = 0
    return out


def only_bg_t(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Only-BG-T: fill the cell's bounding box with tiles of the largest background strip beside it.

    The strip is the biggest of the four full-width/height bands above, below, left and right of the
    box, so the tiles contain no cell pixels (unless a second cell lies in that band, which the
    union mask's box already covers). A box that covers the whole frame is filled with the median
    background colour, or mid-grey when there is no background at all.
    """
    box = bounding_box(mask)
    out = image.copy()
    if box is None:
        return out
    y0, y1, x0, x1 = box
    _h, _w = mask.shape
    strips = [image[:y0, :], image[y1:, :], image[:, :x0], image[:, x1:]]
    strip = max(strips, key=lambda s: s.shape[0] * s.shape[1])
    if strip.size == 0:
        bg = image[~cell(mask)]
        out[y0:y1, x0:x1] = np.median(bg, axis=0).astype(np.uint8) if len(bg) else 128
        return out
    sh, sw = strip.shape[:2]
    rows = np.arange(y1 - y0) % sh
    cols = np.arange(x1 - x0) % sw
    out[y0:y1, x0:x1] = strip[rows[:, None], cols[None, :]]
    return out


def paste(fg_image: np.ndarray, fg_mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The cell of fg_image (through fg_mask, same position) over `background` (same size)."""
    if background.shape != fg_image.shape:
        raise ValueError(f"background {background.shape} and image {fg_image.shape} differ in size")
    return np.where(cell(fg_mask)[:, :, None], fg_image, background).astype(np.uint8)


def resize_to(image: np.ndarray, shape: tuple[int, int], is_mask: bool = False) -> np.ndarray:
    """Resize an image (bilinear) or mask (nearest) to (H, W) when the sizes differ."""
    if image.shape[:2] == shape:
        return image
    from PIL import Image

    resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), resample))


def mixed(fg_image: np.ndarray, fg_mask: np.ndarray, bg_image: np.ndarray, bg_mask: np.ndarray) -> np.ndarray:
    """Mixed-*: fg's cell pasted onto the Only-BG-T background of another photo (resized to fit)."""
    shape = fg_image.shape[:2]
    background = only_bg_t(resize_to(bg_image, shape), resize_to(bg_mask, shape, is_mask=True))
    return paste(fg_image, fg_mask, background)


# Variants that need only the photo itself; the Mixed-* ones need a partner photo (see evaluation.bias).
SINGLE_VARIANTS = {
    "original": lambda image, mask: image,
    "only_fg": only_fg,
    "no_fg": no_fg,
    "only_bg_t": only_bg_t,
}
MIXED_VARIANTS = ("mixed_same", "mixed_rand", "mixed_next")
VARIANT_NAMES = tuple(SINGLE_VARIANTS) + MIXED_VARIANTS

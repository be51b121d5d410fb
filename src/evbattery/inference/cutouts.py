"""Inference-time cutouts: which mask the cutout model gets, made exactly the way training made them.

Policy: an uploaded mask if given (its size must equal the image's) -> "uploaded"; else an image
with a non-opaque alpha channel is a cutout already -> "alpha"; else the segmenter predicts the
mask -> "segmenter". The cutout itself always comes from evbattery.data.cutouts.make_cutout.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from evbattery.data.cutouts import make_cutout

MASK_SOURCES = ("uploaded", "alpha", "segmenter")


class MaskSizeError(ValueError):
    """An uploaded mask whose size differs from the image."""


class NoSegmenterError(RuntimeError):
    """A cutout is needed, no mask was given, and no segmenter is loaded."""


class MaskPredictor(Protocol):
    """What the cutout policy needs from a segmenter (evbattery.models.segmenter.Segmenter)."""

    def predict_mask(self, image: np.ndarray) -> np.ndarray: ...


def cutout_for(image: np.ndarray, uploaded_mask: np.ndarray | None = None, alpha_mask: np.ndarray | None = None,
               segmenter: MaskPredictor | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(cutout HxWx3 uint8, mask HxW uint8 0/255, mask_source) for an RGB image by the policy above."""
    if uploaded_mask is not None:
        if uploaded_mask.shape[:2] != image.shape[:2]:
            raise MaskSizeError(f"mask size {uploaded_mask.shape[1]}x{uploaded_mask.shape[0]} differs from image "
                                f"size {image.shape[1]}x{image.shape[0]}")
        mask, source = uploaded_mask, "uploaded"
    elif alpha_mask is not None:
        mask, source = alpha_mask, "alpha"
    elif segmenter is not None:
        mask, source = np.asarray(segmenter.predict_mask(image), dtype=np.uint8), "segmenter"
    else:
        raise NoSegmenterError("a cutout model needs a mask: upload one, send an RGBA cutout, or provide "
                               "a segmenter (model/segmenter.pth)")
    return make_cutout(image, mask), mask, source


def load_segmenter(path: Any, device: Any = None) -> MaskPredictor | None:
    """The segmenter at path, or None if the file (or the segmenter module) is not there yet."""
    from pathlib import Path

    if not Path(path).is_file():
        return None
    try:
        from evbattery.models.segmenter import Segmenter
    except ImportError:
        return None
    return Segmenter.from_checkpoint(path, device=device)

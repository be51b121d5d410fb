"""Encoding test images into upload bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    """Image or array -> bytes in the given format."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def files(image: bytes, mask: bytes | None = None, ctype: str = "image/png") -> dict[str, tuple[str, bytes, str]]:
    """httpx multipart files for an upload (and an optional mask)."""
    out = {"file": ("upload.png", image, ctype)}
    if mask is not None:
        out["mask"] = ("mask.png", mask, "image/png")
    return out

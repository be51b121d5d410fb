"""Reading images and masks robustly: EXIF rotation, every PIL mode, 16-bit, decompression bombs.

One place decides how bytes become an RGB uint8 array, so the dataset tools, training, the CLI
and the API see the same pixels.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from evbattery.core.config import MASK_THRESHOLD


def readable_suffixes() -> tuple[str, ...]:
    """Every file suffix the image library can open (JPEG, PNG, WebP, AVIF, BMP, TIFF, GIF, ...), sorted."""
    from PIL import features

    features.check("avif")  # loads the optional AVIF/WebP plugins so their suffixes are registered
    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


class ImageDecodeError(ValueError):
    """The bytes or file are not a readable image."""


class ImageTooLargeError(ValueError):
    """The image has more pixels than allowed (decompression-bomb guard)."""


def _open(source: bytes | Path | str, max_pixels: int | None) -> Image.Image:
    name = "upload" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes) and len(source) == 0:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLargeError(
                    f"{name}: {img.width}x{img.height} = {img.width * img.height} pixels exceeds the limit "
                    f"of {max_pixels}"
                )
            img.load()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(f"{name}: {e}") from e
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError...)
        raise ImageDecodeError(f"{name}: not a readable image ({type(e).__name__}: {e})") from e
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """Convert 16/32-bit integer and float modes to 8-bit 'L' by scaling the full range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            arr = arr / 257.0
        elif arr.max() > 255:
            arr = arr / max(arr.max(), 1.0) * 255.0
        return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), mode="L")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode to RGB (alpha is dropped; see split_alpha)."""
    img = ImageOps.exif_transpose(img) or img
    img = _to_8bit(img)
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def split_alpha(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """Return (RGB image, alpha mask 0/255 or None). An alpha channel that is fully opaque counts as none."""
    img = ImageOps.exif_transpose(img) or img
    img = _to_8bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return to_rgb(img), None
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba)[:, :, 3]
    if alpha.min() == 255:
        return rgba.convert("RGB"), None
    mask = np.where(alpha >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
    return rgba.convert("RGB"), mask


def decode_image(source: bytes | Path | str, max_pixels: int | None = None) -> Image.Image:
    """Open bytes or a path as an RGB PIL image (EXIF-rotated, any mode)."""
    return to_rgb(_open(source, max_pixels))


def decode_image_with_alpha(
    source: bytes | Path | str, max_pixels: int | None = None
) -> tuple[Image.Image, np.ndarray | None]:
    """Open bytes or a path as (RGB image, alpha mask or None)."""
    return split_alpha(_open(source, max_pixels))


def load_rgb(path: Path | str) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 array."""
    return np.asarray(decode_image(Path(path)))


def decode_mask(source: bytes | Path | str, max_pixels: int | None = None) -> np.ndarray:
    """Read a mask as an HxW uint8 array of 0 / 255 (any mode; >= MASK_THRESHOLD is cell).

    RGB(A) masks count a pixel as cell when any channel is bright; an alpha channel, when present
    and not fully opaque, is used as the mask itself.
    """
    img = _open(source, max_pixels)
    img = ImageOps.exif_transpose(img) or img
    img = _to_8bit(img)
    if img.mode in ("RGBA", "LA"):
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            return np.where(alpha >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
    arr = np.asarray(img.convert("L") if img.mode not in ("RGB", "RGBA") else img.convert("RGB"))
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return np.where(arr >= MASK_THRESHOLD, 255, 0).astype(np.uint8)


def load_mask(path: Path | str) -> np.ndarray:
    """Read a mask file as an HxW uint8 array of 0 / 255."""
    return decode_mask(Path(path))


def save_png(arr: np.ndarray, path: Path) -> None:
    """Write an array as PNG (deterministic bytes: no timestamps, fixed compression)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def save_jpeg(arr: np.ndarray, path: Path, quality: int = 92) -> None:
    """Write an RGB array as JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=int(quality))

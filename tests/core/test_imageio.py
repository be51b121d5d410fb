"""Image decoding: every PIL mode, EXIF rotation, alpha, bad bytes, decompression bombs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evbattery.core.imageio import (
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    decode_image_with_alpha,
    decode_mask,
)


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "I", "F", "1"])
def test_modes_become_rgb(mode: str) -> None:
    arr = np.linspace(0, 255, 16 * 12).reshape(12, 16).astype(np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray(arr.astype(np.uint16) * 257)
    fmt = "TIFF" if mode in ("I", "F") else "PNG"
    out = decode_image(_bytes(img, fmt))
    assert out.mode == "RGB" and out.size == (16, 12)


def test_sixteen_bit_scaled_to_eight() -> None:
    img = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert img.mode == "I;16"
    assert np.asarray(decode_image(_bytes(img))).min() == 255


def test_cmyk_jpeg() -> None:
    img = Image.new("CMYK", (10, 8), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = np.asarray(decode_image(_bytes(img, "JPEG"))).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_exif_rotation_applied() -> None:
    img = Image.new("RGB", (20, 10), "white")
    img.paste((255, 0, 0), (0, 0, 6, 4))  # a red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(_bytes(img, "PNG", exif=exif.tobytes()))
    assert out.size == (10, 20)
    px = np.asarray(out).astype(int)
    # rotated 90 degrees clockwise: the stored top-left corner is now the top-right one (not bottom-left, as
    # a counter-clockwise turn or a transpose-and-flip mix-up would put it)
    assert (px[0:4, 6:10] == [255, 0, 0]).all()
    assert (px[0:4, 0:4] == 255).all() and (px[16:20, 0:4] == 255).all() and (px[16:20, 6:10] == 255).all()
    assert (px == [255, 0, 0]).all(axis=2).sum() == 24  # the block kept its 6 x 4 pixels, turned to 4 x 6


def test_alpha_becomes_mask_and_opaque_alpha_does_not() -> None:
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 3] = 0
    rgba[2:4, 2:4, 3] = 255
    rgb, mask = decode_image_with_alpha(_bytes(Image.fromarray(rgba, "RGBA")))
    assert mask is not None and mask.sum() == 4 * 255 and rgb.mode == "RGB"
    opaque = np.full((6, 6, 4), 255, np.uint8)
    assert decode_image_with_alpha(_bytes(Image.fromarray(opaque, "RGBA")))[1] is None


def test_mask_thresholding_any_mode() -> None:
    arr = np.array([[0, 127], [128, 255]], np.uint8)
    assert decode_mask(_bytes(Image.fromarray(arr))).tolist() == [[0, 0], [255, 255]]
    rgb = np.stack([arr] * 3, axis=-1)
    assert decode_mask(_bytes(Image.fromarray(rgb))).tolist() == [[0, 0], [255, 255]]


@pytest.mark.parametrize("data,msg", [(b"", "empty file"), (b"not an image at all", "not a readable image")])
def test_bad_bytes(data: bytes, msg: str) -> None:
    with pytest.raises(ImageDecodeError, match=msg):
        decode_image(data)


def test_truncated_image() -> None:
    data = _bytes(Image.new("RGB", (64, 64), "red"), "JPEG")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


def test_pixel_limit() -> None:
    data = _bytes(Image.new("L", (300, 300)))
    with pytest.raises(ImageTooLargeError, match="90000 pixels exceeds the limit of 1000"):
        decode_image(data, max_pixels=1000)

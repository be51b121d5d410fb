"""Small fast raster primitives shared by the synthetic renderer (numpy + PIL, no per-pixel loops)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _value_noise(h: int, w: int, cells: float, rng: np.random.Generator) -> np.ndarray:
    gh, gw = max(2, round(cells * h / max(h, w)) + 2), max(2, round(cells * w / max(h, w)) + 2)
    small = Image.fromarray(rng.random((gh, gw), dtype=np.float32), mode="F")
    return np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.float32).clip(0, 1)


def _fbm(h: int, w: int, base: float, octaves: int, rng: np.random.Generator, gain: float) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * (_value_noise(h, w, base * 2**o, rng) - 0.5)
        total += amp
        amp *= gain
    return out / total * 2.0


def _stretched(h: int, w: int, along: int, across: int, rng: np.random.Generator) -> np.ndarray:
    small = Image.fromarray(rng.random((across, along), dtype=np.float32), mode="F")
    return np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32) * 2 - 1


# Noise fields are expensive to synthesise per image, so each process keeps a small bank of them per
# (kind, shape, parameters), made from a fixed seed, and every image takes a random crop, flip and sign
# of a random bank field. Output stays a pure function of the image's own generator.
_BANK: dict[tuple, list[np.ndarray]] = {}
_BANK_VARIANTS = 4


def _from_bank(key: tuple, make, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    big_h, big_w = h + h // 2 + 1, w + w // 2 + 1
    k = (*key, big_h, big_w)
    if k not in _BANK:
        seed = np.frombuffer(repr(k).encode(), np.uint8).astype(np.uint64)
        brng = np.random.default_rng(seed)
        _BANK[k] = [make(big_h, big_w, brng) for _ in range(_BANK_VARIANTS)]
    f = _BANK[k][int(rng.integers(_BANK_VARIANTS))]
    y, x = int(rng.integers(0, big_h - h + 1)), int(rng.integers(0, big_w - w + 1))
    out = f[y:y + h, x:x + w]
    if rng.random() < 0.5:
        out = out[::-1]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def value_noise(h: int, w: int, cells: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [0,1] (HxW float32) with ~`cells` cells across the longer side."""
    out = _from_bank(("value", round(cells, 2)), lambda a, b, r: _value_noise(a, b, cells * max(a, b) / max(h, w), r), h, w, rng)
    return out if rng.random() < 0.5 else 1.0 - out


def bucket_side(n: int) -> int:
    """The smallest of 16, 20, 24, 28, 32, 40, ... (4 steps per octave) that is >= n."""
    step = 1 << max(2, int(n - 1).bit_length() - 3)  # 1/8 of the next power of two: 4 steps per octave
    return max(16, -(-n // step) * step)


def fbm(h: int, w: int, base: float, octaves: int, rng: np.random.Generator, gain: float = 0.5) -> np.ndarray:
    """Fractal noise (sum of value-noise octaves), roughly zero-mean, unit-ish amplitude (HxW float32).

    ~`base` cells across the longer side, to within 25 %: fields come from a bank per bucketed square
    side, so objects of every size share a few banks instead of building one per exact shape.
    """
    side = bucket_side(max(h, w))
    make = lambda a, b, r: _fbm(a, b, base * max(a, b) / side, octaves, r, gain)
    out = _from_bank(("fbm", round(base, 2), octaves, gain), make, side, side, rng)[:h, :w]
    return out if rng.random() < 0.5 else -out


def stretched_noise(h: int, w: int, along: int, across: int, rng: np.random.Generator) -> np.ndarray:
    """Anisotropic noise (streaks along x): few cells along, many across, in [-1,1]."""
    make = lambda a, b, r: _stretched(a, b, max(2, along * b // w), max(2, across * a // h), r)
    out = _from_bank(("streak", along, across), make, h, w, rng)
    return out if rng.random() < 0.5 else -out


def blur(arr: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of an HxW float array in [0,1] via PIL (8-bit precision is enough here)."""
    if radius <= 0:
        return arr
    img = Image.fromarray((arr.clip(0, 1) * 255).astype(np.uint8), mode="L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def blur_rgb(arr: np.ndarray, radius: float) -> np.ndarray:
    """Small Gaussian blur (sigma = radius <= ~1.5 px) of an HxWx3 float32 array: separable 5-tap in numpy,
    several times faster than PIL's box-blur cascade at these radii."""
    if radius <= 0:
        return arr
    k = np.exp(-0.5 * (np.arange(-2, 3) / radius) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = arr.shape[:2]
    tmp = np.empty_like(arr)  # products go here, sums accumulate in place: no temporary per tap
    p = np.pad(arr, ((2, 2), (0, 0), (0, 0)), mode="edge")
    out = np.multiply(p[0:h], k[0])
    for i in range(1, 5):
        out += np.multiply(p[i:i + h], k[i], out=tmp)
    p = np.pad(out, ((0, 0), (2, 2), (0, 0)), mode="edge")
    np.multiply(p[:, 0:w], k[0], out=out)
    for i in range(1, 5):
        out += np.multiply(p[:, i:i + w], k[i], out=tmp)
    return out


def poly_coverage(polys: list[np.ndarray], h: int, w: int, ss: int = 4) -> np.ndarray:
    """Antialiased coverage (HxW float32 in [0,1]) of the union of polygons (Nx2 pixel coords)."""
    img = Image.new("L", (w * ss, h * ss), 0)
    d = ImageDraw.Draw(img)
    for p in polys:
        d.polygon([(float(x) * ss, float(y) * ss) for x, y in p], fill=255)
    return np.asarray(img.reduce(ss), dtype=np.float32) / 255.0


def poly_window(polys: list[np.ndarray], h: int, w: int, ss: int = 4) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Like poly_coverage but only over the polygons' bounding window: (coverage, (rows, cols))."""
    allp = np.concatenate(polys)
    x0, y0 = np.clip(np.floor(allp.min(0)).astype(int) - 1, 0, [w, h])
    x1, y1 = np.clip(np.ceil(allp.max(0)).astype(int) + 1, 0, [w, h])
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    cov = poly_coverage([p - [x0, y0] for p in polys], y1 - y0, x1 - x0, ss)
    return cov, (slice(y0, y1), slice(x0, x1))


def sdf_coverage(sdf: np.ndarray) -> np.ndarray:
    """Pixel coverage from a signed distance in pixels (negative inside): a 1-px linear ramp."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def over(dst: np.ndarray, dst_a: np.ndarray, rgb: np.ndarray, a: np.ndarray) -> None:
    """In place: composite colour `rgb` with coverage `a` over (dst, dst_a)."""
    dst += (rgb - dst) * a[..., None]
    dst_a += a * (1.0 - dst_a)


def rot(angle: float) -> np.ndarray:
    """2x2 rotation matrix."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


class Light:
    """Scene light: unit direction in image coordinates (x right, y down, z toward camera), ambient."""

    def __init__(self, direction: np.ndarray, ambient: float) -> None:
        self.dir = np.asarray(direction, np.float64) / np.linalg.norm(direction)
        self.ambient = float(ambient)


@dataclass
class CellLayer:
    """A rendered cell: rgb HxWx3 float [0,255], alpha HxW float [0,1], pose metadata."""

    rgb: np.ndarray
    alpha: np.ndarray
    pose: dict[str, Any] = field(default_factory=dict)

"""Procedural backgrounds: named families of tray / belt / bench surfaces, each widely varied.

Lesson from a prototype: loud high-contrast textures kept an image model at chance;
real trays and belts are structured but quieter than the cell, so every family here stays at
moderate contrast (texture amplitude a few percent to ~15 % of the base brightness).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from evbattery.data.synth.raster import blur, fbm, stretched_noise, value_noise

Render = Callable[[int, np.random.Generator], np.ndarray]


def _tint(base: tuple[float, float, float], rng: np.random.Generator, spread: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.normal(0, spread, 3), 5, 250).astype(np.float32)


def _shade(colour: np.ndarray, lum: np.ndarray) -> np.ndarray:
    """HxW relative luminance (1 = base) times an RGB colour -> HxWx3."""
    return lum.astype(np.float32)[..., None] * colour.astype(np.float32)[None, None, :]


def _specks(img: np.ndarray, rng: np.random.Generator, n: int, dark: bool, size: int) -> None:
    """Sprinkle small low-contrast dust/pits in place."""
    h, w = img.shape[:2]
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    r = max(1, size // 256)
    f = rng.uniform(0.75, 0.9, n) if dark else rng.uniform(1.1, 1.25, n)
    for dy in range(r):
        for dx in range(r):
            yy, xx = (ys + dy) % h, (xs + dx) % w
            img[yy, xx] = img[yy, xx] * f[:, None]


def grey_tray(size: int, rng: np.random.Generator) -> np.ndarray:
    """Moulded grey plastic tray: smooth, mild mottling, a raised rim/rib and scuffs."""
    col = _tint((rng.uniform(95, 175),) * 3, rng, 6)
    lum = 1 + 0.04 * fbm(size, size, 3, 4, rng) + 0.015 * fbm(size, size, 40, 2, rng)
    img = _shade(col, lum)
    # a moulded rib or pocket edge somewhere in the frame: a soft light/dark line pair
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    # a pocket of the tray: its walls may lie partly or wholly outside the frame
    x0, y0 = (rng.uniform(-0.3, 0.25) * size for _ in range(2))
    x1, y1 = (size - rng.uniform(-0.3, 0.25) * size for _ in range(2))
    d.rounded_rectangle([x0, y0, x1, y1], radius=int(rng.uniform(0.05, 0.15) * size), outline=255,
                        width=max(1, size // 128))
    edge = blur(np.asarray(m, np.float32) / 255, size / 200)
    img *= (1 - 0.12 * edge)[..., None]
    scuff = np.clip(stretched_noise(size, size, 3, size // 2, rng), 0.85, 1) - 0.85
    return img * (1 + 0.3 * scuff)[..., None]


def rubber_belt(size: int, rng: np.random.Generator) -> np.ndarray:
    """Dark rubber conveyor belt: fine grain, faint transverse ridges, wear streaks along travel."""
    col = _tint((rng.uniform(35, 80),) * 3, rng, 4)
    period = rng.uniform(0.03, 0.08) * size
    x = np.arange(size, dtype=np.float32)
    ridges = 0.05 * np.sin(2 * np.pi * x / period)[None, :] * rng.uniform(0.3, 1)
    lum = 1 + ridges + 0.06 * fbm(size, size, 60, 2, rng) + 0.08 * stretched_noise(size, size, size // 3, 4, rng).T
    img = _shade(col, lum)
    _specks(img, rng, int(size * 0.6), dark=False, size=size)
    return img


def brushed_metal(size: int, rng: np.random.Generator) -> np.ndarray:
    """Brushed steel sheet: fine streaks in one direction, a broad soft reflection."""
    col = _tint((rng.uniform(120, 190),) * 3, rng, 5) * np.array([0.97, 0.99, 1.03], np.float32)
    streak = stretched_noise(size, size, 6, size, rng) * 0.05
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    a = rng.uniform(0, np.pi)
    glow = 0.12 * np.exp(-(((xx - 0.5) * float(np.cos(a)) + (yy - 0.5) * float(np.sin(a))) / rng.uniform(0.2, 0.5)) ** 2)
    img = _shade(col, 1 + streak + glow - 0.06 + 0.02 * fbm(size, size, 4, 2, rng))
    if rng.random() < 0.5:  # sheet rotated: streaks vertical
        img = img.transpose(1, 0, 2)
    return img


def wood(size: int, rng: np.random.Generator) -> np.ndarray:
    """Wooden workbench: warm planks with grain lines bent by noise, low contrast."""
    r = rng.uniform(135, 195)
    col = _tint((r, r * rng.uniform(0.62, 0.76), r * rng.uniform(0.38, 0.52)), rng, 4)
    yy = np.mgrid[:size, :size][0].astype(np.float32)
    warp = fbm(size, size, 3, 3, rng) * size * 0.04
    freq = rng.uniform(20, 45) / size
    grain = np.sin(2 * np.pi * (yy + warp) * freq + 3 * fbm(size, size, 2, 2, rng))
    lum = 1 + 0.06 * grain + 0.05 * stretched_noise(size, size, 3, size // 2, rng).T[:size, :size].T
    plank = rng.uniform(0.25, 0.6) * size
    seams = np.abs(((yy + rng.uniform(0, plank)) % plank) - plank / 2) > plank / 2 - max(1, size / 200)
    lum = lum * np.where(seams, 0.8, 1.0) * (1 + 0.06 * ((yy // plank) % 3 - 1))
    img = _shade(col, lum)
    return img.transpose(1, 0, 2) if rng.random() < 0.5 else img


def cardboard(size: int, rng: np.random.Generator) -> np.ndarray:
    """Corrugated cardboard sheet: kraft brown, fibres, faint flute lines, a crease."""
    r = rng.uniform(160, 210)
    col = _tint((r, r * rng.uniform(0.74, 0.8), r * rng.uniform(0.5, 0.58)), rng, 4)
    x = np.arange(size, dtype=np.float32)
    flutes = 0.025 * np.sin(2 * np.pi * x / (rng.uniform(0.015, 0.03) * size))[None, :]
    lum = 1 + flutes + 0.05 * fbm(size, size, 5, 3, rng) + 0.03 * fbm(size, size, 80, 1, rng)
    c = rng.uniform(0.2, 0.8) * size
    lum = lum * (1 - 0.1 * np.exp(-((x - c) / (size / 150)) ** 2))[None, :]
    img = _shade(col, lum)
    return img.transpose(1, 0, 2) if rng.random() < 0.5 else img


def concrete(size: int, rng: np.random.Generator) -> np.ndarray:
    """Sealed concrete floor: grey mottling at several scales, small pits and aggregate."""
    col = _tint((rng.uniform(110, 175),) * 3, rng, 5) * np.array([1.0, 0.99, 0.96], np.float32)
    lum = 1 + 0.08 * fbm(size, size, 4, 5, rng, gain=0.6)
    img = _shade(col, lum)
    _specks(img, rng, int(size * 1.5), dark=True, size=size)
    _specks(img, rng, int(size * 0.8), dark=False, size=size)
    return img


def lab_bench(size: int, rng: np.random.Generator) -> np.ndarray:
    """Epoxy-resin lab bench (black, grey, white or green-grey): smooth with a soft ceiling-light sheen."""
    base = [(45, 47, 50), (90, 95, 92), (205, 205, 200), (80, 100, 90), (150, 160, 165)][int(rng.integers(5))]
    col = _tint(base, rng, 6)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    cy, cx = rng.uniform(-0.2, 1.2, 2)
    sheen = 0.18 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(0.05, 0.3))
    lum = 1 + 0.02 * fbm(size, size, 6, 3, rng)
    return _shade(col, lum) + sheen[..., None] * 120


def esd_mat(size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-static (ESD) bench mat: matte blue / green / grey, faint dissipative grid, a snap button."""
    base = [(60, 100, 150), (60, 120, 95), (110, 115, 120), (70, 80, 95)][int(rng.integers(4))]
    col = _tint(base, rng, 8)
    pitch = rng.uniform(0.08, 0.2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    ox, oy = rng.uniform(0, pitch, 2)
    lw = max(0.6, size / 400)
    grid = (np.abs((xx + ox) % pitch - pitch / 2) > pitch / 2 - lw) | (np.abs((yy + oy) % pitch - pitch / 2) > pitch / 2 - lw)
    lum = 1 + 0.035 * fbm(size, size, 30, 2, rng) + 0.03 * fbm(size, size, 3, 2, rng) - 0.05 * grid
    return _shade(col, lum)


def cluttered_tray(size: int, rng: np.random.Generator) -> np.ndarray:
    """A used sorting tray: grey or black plastic with dust, flakes and small debris."""
    col = _tint((rng.uniform(50, 150),) * 3, rng, 6)
    img = _shade(col, 1 + 0.05 * fbm(size, size, 4, 4, rng))
    layer = Image.new("RGB", (size * 2, size * 2), (0, 0, 0))
    alpha = Image.new("L", (size * 2, size * 2), 0)
    d, da = ImageDraw.Draw(layer), ImageDraw.Draw(alpha)
    for _ in range(int(rng.integers(15, 40))):
        cx, cy = rng.uniform(0, size * 2, 2)
        r = rng.uniform(0.003, 0.015) * size * 2
        k = rng.integers(3, 6)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        pts = [(cx + r * rng.uniform(0.5, 1.5) * np.cos(t), cy + r * rng.uniform(0.5, 1.5) * np.sin(t)) for t in ang]
        shade = col * rng.uniform(0.6, 1.45) + rng.normal(0, 10, 3)
        d.polygon(pts, fill=tuple(int(v) for v in np.clip(shade, 0, 255)))
        da.polygon(pts, fill=int(rng.uniform(120, 230)))
    a = np.asarray(alpha.reduce(2), np.float32)[..., None] / 255
    img = img * (1 - a) + np.asarray(layer.reduce(2), np.float32) * a
    _specks(img, rng, int(size * 1.0), dark=rng.random() < 0.5, size=size)
    return img


def studio_backdrop(size: int, rng: np.random.Generator) -> np.ndarray:
    """A product shot's seamless paper: near-white to light grey, a soft sweep of light across it, no texture.

    Not a family (the bias study's families and homes stay as they are): `render_scene(studio_share=...)` puts a
    share of photos of any class on it, as shops and datasheets photograph cells."""
    col = _tint((rng.uniform(200, 250),) * 3, rng, 4)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    a = rng.uniform(0, 2 * np.pi)
    sweep = 1 - rng.uniform(0.03, 0.15) * (0.5 + xx * np.cos(a) + yy * np.sin(a))
    lum = sweep + 0.008 * fbm(size, size, 2, 2, rng)
    return np.clip(_shade(col, lum), 0, 255)


FAMILY_RENDERERS: dict[str, Render] = {
    "grey_tray": grey_tray,
    "rubber_belt": rubber_belt,
    "brushed_metal": brushed_metal,
    "wood": wood,
    "cardboard": cardboard,
    "concrete": concrete,
    "lab_bench": lab_bench,
    "esd_mat": esd_mat,
    "cluttered_tray": cluttered_tray,
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_RENDERERS)


def render_background_float(family: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A background of a family as HxWx3 float32 in [0,255] (the renderer's working format)."""
    if family not in FAMILY_RENDERERS:
        raise ValueError(f"unknown background family {family!r}; expected one of {', '.join(FAMILIES)}")
    img = FAMILY_RENDERERS[family](size, rng).astype(np.float32)
    # gentle overall illumination falloff so no background is perfectly flat
    img *= (1 + 0.08 * (value_noise(size, size, 1.5, rng) - 0.5))[..., None]
    return np.clip(img, 0, 255)


def render_background(family: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A background of a named family as HxWx3 uint8 (size x size)."""
    return render_background_float(family, size, rng).round().astype(np.uint8)

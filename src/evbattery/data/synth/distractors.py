"""Distractor objects found on sorting trays (screws, cables, tape, tools). They may lie on top of a
cell; the pixels they cover are not part of the cell mask."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from evbattery.data.synth.palette import BODY, METAL, pick

SS = 2  # supersampling factor for antialiased edges
KINDS: tuple[str, ...] = ("screw", "cable", "tape", "screwdriver", "washer")


def _c(col: np.ndarray, f: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(col * f, 0, 255))


def _pt(c: np.ndarray, a: float, d: float, off: float = 0.0) -> tuple[float, float]:
    return (c[0] + d * np.cos(a) - off * np.sin(a), c[1] + d * np.sin(a) + off * np.cos(a))


def draw_distractor(kind: str, size: int, centre: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """One distractor near `centre`: (rgb hxwx3 float, alpha hxw float in [0,1], its window in the frame)."""
    reach = int(np.ceil(150 * size / 256))  # no distractor reaches further from its centre
    y0, x0 = (max(int(v) - reach, 0) for v in centre[::-1])
    y1, x1 = (min(int(v) + reach, size) for v in centre[::-1])
    win = (slice(y0, y1), slice(x0, x1))
    img = Image.new("RGB", ((x1 - x0) * SS, (y1 - y0) * SS), (0, 0, 0))
    al = Image.new("L", ((x1 - x0) * SS, (y1 - y0) * SS), 0)
    d, da = ImageDraw.Draw(img), ImageDraw.Draw(al)
    c = (centre - [x0, y0]) * SS
    n = size * SS
    a = rng.uniform(0, 2 * np.pi)
    s = n / 256.0
    if kind == "screw":
        L, r = rng.uniform(10, 22) * s, rng.uniform(1.8, 3.2) * s
        metal = pick(METAL, rng, 6)
        shaft = [_pt(c, a, 0, -r * 0.6), _pt(c, a, L, -r * 0.5), _pt(c, a, L, r * 0.5), _pt(c, a, 0, r * 0.6)]
        d.polygon(shaft, fill=_c(metal, 0.8))
        da.polygon(shaft, fill=255)
        for k in range(int(L / (2.2 * s))):  # thread
            p0, p1 = _pt(c, a, r * 1.5 + k * 2.2 * s, -r * 0.6), _pt(c, a, r * 1.5 + k * 2.2 * s + s, r * 0.6)
            d.line([p0, p1], fill=_c(metal, 0.55), width=max(1, int(s)))
        hexa = [_pt(c, a + t, r * 1.6) for t in np.arange(6) * np.pi / 3]
        d.polygon(hexa, fill=_c(metal, 1.05))
        da.polygon(hexa, fill=255)
        d.ellipse([c[0] - r * 0.7, c[1] - r * 0.7, c[0] + r * 0.7, c[1] + r * 0.7], fill=_c(metal, 1.2))
    elif kind == "washer":
        r = rng.uniform(3, 6) * s
        metal = pick(METAL, rng, 6)
        box = [c[0] - r, c[1] - r, c[0] + r, c[1] + r]
        d.ellipse(box, fill=_c(metal))
        da.ellipse(box, fill=255)
        hole = [c[0] - r * 0.45, c[1] - r * 0.45, c[0] + r * 0.45, c[1] + r * 0.45]
        da.ellipse(hole, fill=0)
    elif kind == "cable":
        col = pick(((25, 25, 25), (180, 30, 30), (30, 60, 170), (120, 120, 120), (230, 230, 230), (30, 140, 60)), rng, 8)
        width = rng.uniform(2, 5) * s
        pts = [c]
        for _ in range(int(rng.integers(3, 7))):
            a += rng.normal(0, 0.6)
            pts.append(pts[-1] + rng.uniform(12, 30) * s * np.array([np.cos(a), np.sin(a)]))
        pts = [tuple(p) for p in pts]
        d.line(pts, fill=_c(col), width=int(width), joint="curve")
        da.line(pts, fill=255, width=int(width), joint="curve")
        d.line(pts, fill=_c(col * 0.6 + 100), width=max(1, int(width / 4)), joint="curve")  # sheen
    elif kind == "tape":
        col = pick(((200, 120, 30), (150, 150, 150), (60, 120, 200), (220, 200, 60), (230, 230, 225)), rng, 8)
        L, wdt = rng.uniform(25, 60) * s, rng.uniform(6, 12) * s
        quad = [_pt(c, a, -L / 2, -wdt / 2), _pt(c, a, L / 2, -wdt / 2), _pt(c, a, L / 2, wdt / 2), _pt(c, a, -L / 2, wdt / 2)]
        d.polygon(quad, fill=_c(col))
        da.polygon(quad, fill=int(rng.uniform(170, 235)))  # tape is slightly translucent
    else:  # screwdriver: coloured handle + metal shaft
        col = pick(BODY, rng)
        hl, hw, sl = rng.uniform(25, 40) * s, rng.uniform(6, 9) * s, rng.uniform(25, 50) * s
        handle = [_pt(c, a, 0, -hw / 2), _pt(c, a, hl, -hw / 2), _pt(c, a, hl, hw / 2), _pt(c, a, 0, hw / 2)]
        shaft = [_pt(c, a, hl, -1.2 * s), _pt(c, a, hl + sl, -1.0 * s), _pt(c, a, hl + sl, 1.0 * s), _pt(c, a, hl, 1.2 * s)]
        d.polygon(shaft, fill=_c(pick(METAL, rng, 5)))
        da.polygon(shaft, fill=255)
        d.polygon(handle, fill=_c(col))
        da.polygon(handle, fill=255)
        d.line([_pt(c, a, 2 * s, -hw / 5), _pt(c, a, hl - 2 * s, -hw / 5)], fill=_c(col * 0.6 + 100), width=max(1, int(s)))
    rgb = np.asarray(img.reduce(SS), np.float32)
    alpha = np.asarray(al.reduce(SS), np.float32) / 255.0
    return rgb, alpha, win

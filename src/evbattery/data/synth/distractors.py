"""Distractor objects found on sorting trays and benches (screws, cables, tape, tools, circuit boards). They may
lie on top of a cell; the pixels they cover are not part of the cell mask."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from evbattery.data.synth.palette import BODY, METAL, pick

SS = 2  # supersampling factor for antialiased edges
KINDS: tuple[str, ...] = ("screw", "cable", "tape", "screwdriver", "washer")
# Circuit boards (a BMS, a charger, a microcontroller) sit next to cells in bench and product photos, with a red and
# a black lead. Flat, rectangular and cell-sized, they are what the segmenter mistook for cells on real photos.
BOARD = "board"
PCB = ((25, 105, 50), (20, 80, 40), (165, 30, 35), (30, 60, 150), (25, 25, 28), (85, 40, 115))


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
    elif kind == BOARD:
        _draw_board(d, da, c, a, s, rng)
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


def _rect(c: np.ndarray, a: float, u0: float, u1: float, v0: float, v1: float) -> list[tuple[float, float]]:
    """Corners of the rectangle [u0,u1] x [v0,v1] in a frame at `c` turned by `a` (u along a, v across)."""
    return [_pt(c, a, u0, v0), _pt(c, a, u1, v0), _pt(c, a, u1, v1), _pt(c, a, u0, v1)]


def _draw_board(d: ImageDraw.ImageDraw, da: ImageDraw.ImageDraw, c: np.ndarray, a: float, s: float,
                rng: np.random.Generator) -> None:
    """A circuit board: solder mask, chips, pads, a pin header, mounting holes and two leads off one edge."""
    hu, hv = rng.uniform(16, 45) * s, rng.uniform(10, 28) * s  # half length / half width
    base = pick(PCB, rng, 8)
    board = _rect(c, a, -hu, hu, -hv, hv)
    d.polygon(board, fill=_c(base))
    da.polygon(board, fill=255)
    gold, tin = pick(((200, 165, 70), (215, 185, 95)), rng, 8), pick(METAL, rng, 6)
    for _ in range(int(rng.integers(1, 4))):  # chips: black packages on their tinned pads
        cu, cv = rng.uniform(-0.6, 0.6) * hu, rng.uniform(-0.5, 0.5) * hv
        su, sv = rng.uniform(0.12, 0.3) * hu, rng.uniform(0.15, 0.4) * hv
        pad = 0.8 * s
        d.polygon(_rect(c, a, cu - su - pad, cu + su + pad, cv - sv - pad, cv + sv + pad), fill=_c(tin, 0.9))
        d.polygon(_rect(c, a, cu - su, cu + su, cv - sv, cv + sv), fill=_c(np.array([28.0, 28, 30]), rng.uniform(0.8, 1.3)))
    for _ in range(int(rng.integers(4, 14))):  # passives: small tan or black blocks on pads
        cu, cv = rng.uniform(-0.9, 0.9) * hu, rng.uniform(-0.85, 0.85) * hv
        r = rng.uniform(0.7, 1.6) * s
        col = pick(((180, 150, 110), (40, 40, 40), (150, 120, 60)), rng, 10)
        d.polygon(_rect(c, a, cu - 1.6 * r, cu + 1.6 * r, cv - r, cv + r), fill=_c(col))
    if rng.random() < 0.6:  # a pin header along one long edge
        edge = hv * rng.choice([-0.8, 0.8])
        for k in range(int(2 * hu / (2.6 * s)) - 1):
            u = -hu + (k + 1) * 2.6 * s
            p = _pt(c, a, u, edge)
            d.ellipse([p[0] - 0.9 * s, p[1] - 0.9 * s, p[0] + 0.9 * s, p[1] + 0.9 * s], fill=_c(gold))
    for su, sv in ((-1, -1), (1, 1), (-1, 1), (1, -1))[: int(rng.integers(0, 5))]:  # mounting holes
        p = _pt(c, a, su * (hu - 2.5 * s), sv * (hv - 2.5 * s))
        r = 1.6 * s
        d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=_c(tin))
        d.ellipse([p[0] - r / 2, p[1] - r / 2, p[0] + r / 2, p[1] + r / 2], fill=(20, 20, 20))
    if rng.random() < 0.5:  # silkscreen
        for _ in range(int(rng.integers(1, 4))):
            u, v = rng.uniform(-0.8, 0.6) * hu, rng.uniform(-0.8, 0.8) * hv
            d.line([_pt(c, a, u, v), _pt(c, a, u + rng.uniform(0.1, 0.4) * hu, v)], fill=(225, 225, 220),
                   width=max(1, int(0.7 * s)))
    if rng.random() < 0.8:  # a red and a black lead off the short edge
        side = rng.choice([-1.0, 1.0])
        bend = rng.normal(0, 0.5)
        for col, off in (((190, 30, 30), -1.8 * s), ((25, 25, 25), 1.8 * s)):
            length = rng.uniform(20, 55) * s
            pts = [_pt(c, a, side * hu, off), _pt(c, a, side * (hu + length / 2), off + bend * length / 3),
                   _pt(c, a, side * (hu + length), off + bend * length)]
            w = max(1, int(2.2 * s))
            d.line(pts, fill=col, width=w, joint="curve")
            da.line(pts, fill=255, width=w, joint="curve")

"""Packs: cylindrical cells in a row side by side or a honeycomb seen end-on; prismatic cans as a module.

Real photos of cylindrical cells often show many at once (a pack being built, a tray or a box of 18650s, a
retired module), and a model that only ever saw one or two loose cells called such photos prismatic: a block
of cells is a rectangle. One cell is drawn in a fixed pose and repeated on a lattice, then the whole pack is
rotated; the pack covers the same silhouette area as a single cell would (size must not name the class).
Prismatic modules (2-6 cans side by side, busbars on the posts) are drawn by the prismatic renderer itself, in
3-D, at the area a single can would cover.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from evbattery.data.synth.cells import render_cylindrical
from evbattery.data.synth.prismatic import render_prismatic
from evbattery.data.synth.raster import CellLayer, Light, over

# Default share of photos that show several cells as a unit, per class (`evbattery data synth --packs` overrides
# it), chosen on the real-photo dev split (36 photos) with linear probes (docs/benchmarks.md, "Real photos").
# Cylindrical packs: without them, 4-5 of the 19 cylindrical photos (packs, boxes of cells) were called prismatic;
# 3 % fixed 2-3 of them; more taught "a block of things = cylindrical" (10 %: prismatic recall 50 -> 25-38 %).
# Prismatic modules (2-6 cans side by side, posts joined by busbars; retired EV packs come apart into modules
# before cells): at 20 % a Lite0 probe gained (68.7 -> 74.7 % balanced, prismatic 4/8 -> 8/8), but the recipe's
# Lite2 image probe lost (87.3 -> 78.2 %: it already had 8/8 prismatic, and lost pouches), so they are off by
# default.
PACK_SHARES: dict[str, float] = {"cylindrical": 0.03, "prismatic": 0.0}


def _extent(alpha: np.ndarray) -> tuple[int, int]:
    """Height and width of the covered part of a layer."""
    rows, cols = np.flatnonzero(alpha.max(1) > 0.5), np.flatnonzero(alpha.max(0) > 0.5)
    return (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)) if len(rows) else alpha.shape


def render_cylindrical_pack(area_px: float, rng: np.random.Generator, light: Light) -> CellLayer:
    """A pack of identical cylindrical cells (side-by-side row or end-on honeycomb), randomly rotated."""
    layout = str(rng.choice(["row", "honeycomb"]))
    if layout == "row":  # cells lying side by side, axes parallel, seen from the side
        n_rows, n_cols = int(rng.integers(3, 9)), 1
        cell = render_cylindrical(area_px / n_rows, rng, light, view="side", theta=0.0)
    else:  # standing cells seen from above: the caps in a hexagonal lattice
        n_rows, n_cols = int(rng.integers(2, 6)), int(rng.integers(3, 8))
        cell = render_cylindrical(area_px / (n_rows * n_cols), rng, light, view="end_on", theta=0.0)
    ch, cw = cell.alpha.shape
    eh, ew = _extent(cell.alpha)
    step_y = eh * 0.98
    step_x = ew * 0.87 if layout == "honeycomb" else 0.0
    h = int(np.ceil(step_y * (n_rows - 1) + (eh / 2 if layout == "honeycomb" and n_cols > 1 else 0) + ch))
    w = int(np.ceil(step_x * (n_cols - 1) + cw))
    rgb, alpha = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    for j in range(n_cols):
        for i in range(n_rows):
            y = round(i * step_y + (eh / 2 if layout == "honeycomb" and j % 2 else 0))
            x = round(j * step_x)
            tone = np.float32(rng.uniform(0.9, 1.1))  # cells catch the light a little differently
            over(rgb[y:y + ch, x:x + cw], alpha[y:y + ch, x:x + cw], cell.rgb * tone, cell.alpha)
    angle = float(rng.uniform(0, 360))
    rgb = np.stack([ndimage.rotate(rgb[..., k], angle, reshape=True, order=1) for k in range(3)], -1)
    alpha = np.clip(ndimage.rotate(alpha, angle, reshape=True, order=1), 0, 1)
    keep = np.ix_(alpha.max(1) > 0, alpha.max(0) > 0)  # trim the empty border the rotation added
    rgb, alpha = np.clip(rgb[keep], 0, 255).astype(np.float32), alpha[keep].astype(np.float32)
    return CellLayer(rgb, alpha, {**cell.pose, "pack": layout, "cells": n_rows * n_cols,
                                  "rotation_deg": round(angle, 1)})


def render_pack(cls: str, area_px: float, rng: np.random.Generator, light: Light) -> CellLayer:
    """Several cells of one class as a unit: a cylindrical pack, or a prismatic module of 2-6 cans."""
    if cls == "cylindrical":
        return render_cylindrical_pack(area_px, rng, light)
    if cls == "prismatic":
        return render_prismatic(area_px, rng, light, n_cells=int(rng.integers(2, 7)))
    raise ValueError(f"no pack of {cls!r} cells; packs exist for {', '.join(PACK_SHARES)}")

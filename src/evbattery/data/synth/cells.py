"""Battery cells drawn with perspective and shading: cylindrical, pouch, prismatic.

Each renderer gets a target silhouette area in pixels (so object size never depends on the class),
a light and a random generator, and returns a `CellLayer`: colour, antialiased coverage and pose,
on a canvas just large enough for the cell, with the cell centred.
"""

from __future__ import annotations

import numpy as np

from evbattery.data.synth.palette import BODY, LABEL, METAL, pick
from evbattery.data.synth.prismatic import render_prismatic
from evbattery.data.synth.raster import CellLayer, Light, fbm, over, sdf_coverage


def _canvas(hu: float, hv: float, theta: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Canvas (h, w) holding a box of half-extents (hu, hv) rotated by theta; local (u, v) per pixel."""
    c, s = float(np.cos(theta)), float(np.sin(theta))
    hw = abs(c) * hu + abs(s) * hv + 2
    hh = abs(s) * hu + abs(c) * hv + 2
    w, h = int(np.ceil(2 * hw)), int(np.ceil(2 * hh))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    dx, dy = xx + 0.5 - w / 2, yy + 0.5 - h / 2
    return h, w, dx * c + dy * s, -dx * s + dy * c


def _local_light(light: Light, theta: float) -> tuple[float, float, float]:
    lx, ly, lz = (float(v) for v in light.dir)  # Python floats: numpy scalars would upcast float32 maps
    c, s = float(np.cos(theta)), float(np.sin(theta))
    return lx * c + ly * s, -lx * s + ly * c, lz


def _label_pattern(s: np.ndarray, n: np.ndarray, rng: np.random.Generator, chars: float) -> np.ndarray:
    """Printed text on a label: 1-3 lines of glyph-like marks in one block (0..1 ink).

    s in [0,1] runs along the text, n in [-1,1] across it; `chars` = glyphs per unit of s.
    """
    a = rng.uniform(0.08, 0.5)
    b = a + rng.uniform(0.2, 0.45)
    k, ph = 2 * np.pi * chars, rng.uniform(0, 6)
    glyph = (np.sin(s * k + ph) + 0.7 * np.sin(s * k * 2.63 + 2 * ph)) > 0.2
    words = np.sin(s * k / 6.3 + ph) > -0.75
    n_lines, lh = int(rng.integers(1, 4)), rng.uniform(0.1, 0.18)
    n0 = rng.uniform(-0.3, 0.3)
    rows = np.zeros(n.shape, bool)
    for j in range(n_lines):
        rows |= np.abs(n - n0 - (j - (n_lines - 1) / 2) * lh * 1.7) < lh / 2
    ink = glyph & words & rows & (s > a) & (s < b)
    return ink.astype(np.float32) * rng.uniform(0.35, 0.7)


def render_cylindrical(area_px: float, rng: np.random.Generator, light: Light, view: str | None = None,
                       theta: float | None = None) -> CellLayer:
    """Cylinder: shrink-wrapped body with label bands and a specular streak, elliptic caps in perspective.

    `view` (side | angled | end_on) and `theta` (the axis' angle in the image) are drawn unless given (packs
    draw one cell in a fixed pose and repeat it)."""
    fmt, aspect = [("18650", 3.6), ("21700", 3.33), ("26650", 2.5), ("4680", 1.74)][int(rng.integers(4))]
    aspect *= rng.uniform(0.93, 1.07)
    if view is None:
        view = rng.choice(["side", "angled", "end_on"], p=[0.5, 0.36, 0.14])
    phi = np.radians({"side": rng.uniform(0, 18), "angled": rng.uniform(20, 60), "end_on": rng.uniform(68, 88)}[view])
    r_u, l_u = 0.5, aspect  # unit diameter
    area_unit = 2 * r_u * l_u * np.cos(phi) + np.pi * r_u * r_u * np.sin(phi)
    sc = np.sqrt(area_px / area_unit)
    R, Lp = r_u * sc, l_u * sc * np.cos(phi)
    e = max(R * np.sin(phi), 0.6)
    if theta is None:
        theta = rng.uniform(0, 2 * np.pi)
    h, w, u, v = _canvas(Lp / 2 + e + 1, R + 1, theta)
    lu, lv, lz = _local_light(light, theta)

    n = np.clip(v / R, -1, 1)
    nz = np.sqrt(1 - n * n)
    t = u + e * nz
    sdf_body = np.maximum(np.abs(v) - R, np.maximum(-Lp / 2 - t, t - Lp / 2))
    q = np.sqrt(((u - Lp / 2) / e) ** 2 + (v / R) ** 2)
    sdf_cap = (q - 1) * min(e, R)
    a_body, a_cap = sdf_coverage(sdf_body), sdf_coverage(sdf_cap)

    # wrap: base colour, label band(s), printed marks; shading across the cylinder
    s = (t + Lp / 2) / max(Lp, 1e-3)
    wrap = np.broadcast_to(pick(BODY, rng), (h, w, 3)).copy()
    style = rng.choice(4, p=[0.3, 0.25, 0.2, 0.25])
    if style == 3:  # plain wrap
        band = np.zeros((h, w), np.float32)
    elif style == 0:  # one broad label band
        a, b = sorted(rng.uniform(0.1, 0.9, 2))
        band = ((s > a) & (s < b)).astype(np.float32)
    elif style == 1:  # thin stripes near both ends
        wdt = rng.uniform(0.03, 0.08)
        band = (((s > 0.08) & (s < 0.08 + wdt)) | ((s < 0.92) & (s > 0.92 - wdt))).astype(np.float32)
    else:  # two-tone split
        band = (s > rng.uniform(0.3, 0.7)).astype(np.float32)
    wrap += (pick(LABEL, rng) - wrap) * band[..., None]
    wrap *= (1 - _label_pattern(s, n, rng, rng.uniform(5, 8) * aspect) * (rng.random() < 0.8))[..., None]
    # wrapped diffuse + lifted ambient: a glossy wrap catches room light from all sides, and a hard
    # terminator would make cylinders the only class with a wide brightness range (a colour-stats leak)
    amb = min(light.ambient + 0.1, 0.6)
    diffuse = np.maximum(0, (n * lv + nz * lz + 0.6) / 1.6)
    hv_, hz_ = lv, lz + 1.0
    hn = np.hypot(hv_, hz_) + 1e-6
    spec = np.maximum(0, (n * hv_ + nz * hz_) / hn) ** rng.uniform(20, 80) * rng.uniform(0.12, 0.45)
    body = wrap * (amb + (1 - amb) * diffuse)[..., None] + 255 * spec[..., None]

    # cap: wrap folded over the rim, crimp groove, terminal button (positive) or flat can bottom
    metal = pick(METAL, rng, 6)
    cap_lit = amb + (1 - amb) * max(0.0, np.cos(phi) * lu + np.sin(phi) * lz)
    cap = np.broadcast_to(metal * cap_lit, (h, w, 3)).copy()
    grad = (lu * (u - Lp / 2) / e + lv * n) * 0.15
    cap *= (1 + grad)[..., None]
    cap *= np.where(np.abs(q - 0.78) < 0.05, 0.6, 1.0)[..., None]
    if rng.random() < 0.7:
        btn = q < rng.uniform(0.3, 0.45)
        cap = np.where(btn[..., None], cap * (1.15 + 0.35 * grad)[..., None], cap)
    fold = (q > rng.uniform(0.86, 0.93))[..., None]
    cap = np.where(fold, wrap * (0.6 * cap_lit + 0.2), cap)
    cap += 255 * 0.4 * np.exp(-((u - Lp / 2) / e * 0.7 + n * 0.7 - 0.5) ** 2 / 0.05)[..., None] * 0.4

    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    over(rgb, alpha, body, a_body)
    over(rgb, alpha, cap, a_cap)
    return CellLayer(rgb, alpha, {"format": fmt, "view": str(view), "tilt_deg": round(float(np.degrees(phi)), 1),
                                  "rotation_deg": round(float(np.degrees(theta)) % 360, 1)})


def _rounded_box_sdf(x: np.ndarray, y: np.ndarray, hx: float, hy: float, r: float) -> np.ndarray:
    qx, qy = np.abs(x) - hx + r, np.abs(y) - hy + r
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


def render_pouch(area_px: float, rng: np.random.Generator, light: Light) -> CellLayer:
    """Pouch: thin laminated body with a lighter sealed rim, bulge shading, two foil tabs, maybe a dent."""
    aspect = rng.uniform(1.15, 2.8)
    tilt = np.radians(rng.uniform(0, 45))
    f = np.cos(tilt)
    tab_w, tab_l = rng.uniform(0.1, 0.2), rng.uniform(0.06, 0.14)
    layout = "same_edge" if rng.random() < 0.6 else "opposite_edges"
    hx, hy = 0.5, 0.5 / aspect
    tab_w *= hy * 2 if layout == "same_edge" else hy * 3
    tab_w = min(tab_w, hy * 0.8)
    area_unit = (4 * hx * hy + 2 * tab_w * tab_l) * f
    sc = np.sqrt(area_px / area_unit)
    theta = rng.uniform(0, 2 * np.pi)
    h, w, u, v = _canvas((hx + tab_l) * sc + 1, hy * sc * f + 1, theta)
    x, y = u / sc, v / (sc * f)  # object coordinates (unit long side)
    r = rng.uniform(0.01, 0.05)
    sdf = _rounded_box_sdf(x, y, hx, hy, r)
    a_body = sdf_coverage(sdf * sc * f)

    # tabs protrude from the short edge(s) along x
    if layout == "same_edge":
        off = hy * rng.uniform(0.35, 0.55)
        tabs = [(+1, off), (+1, -off)]
    else:
        tabs = [(+1, rng.uniform(-0.3, 0.3) * hy), (-1, rng.uniform(-0.3, 0.3) * hy)]
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    amb = light.ambient
    lx, ly, lz = (float(v) for v in light.dir)
    for side, yc in tabs:
        tx = side * (hx + tab_l / 2 - 0.01)
        sdf_t = np.maximum(np.abs(x - tx) - tab_l / 2 - 0.01, np.abs(y - yc) - tab_w / 2)
        a_t = sdf_coverage(sdf_t * sc * f)
        foil = pick(METAL, rng, 5) * (amb + (1 - amb) * lz * rng.uniform(0.9, 1.1))
        col = np.broadcast_to(foil, (h, w, 3)).copy()
        seal = np.abs(x - side * (hx + 0.015)) < 0.02  # tab sealant strip
        col[seal] = pick(((200, 170, 60), (30, 30, 30), (210, 200, 150)), rng, 5) * 0.9
        over(rgb, alpha, col, a_t)

    # laminate: bulge height field -> normals -> diffuse + specular
    rim = rng.uniform(0.015, 0.045)
    p = rng.uniform(2, 4.5)  # separable pillow profile: flat middle, soft fall-off, no diagonal creases
    ix, iy = np.clip(np.abs(x) / (hx - rim), 0, 1), np.clip(np.abs(y) / (hy - rim), 0, 1)
    hfield = (1 - ix**p) * (1 - iy**p)
    if rng.random() < 0.35:  # dent or fold
        cx_, cy_ = rng.uniform(-0.3, 0.3), rng.uniform(-0.6, 0.6) * hy
        if rng.random() < 0.5:
            hfield -= 0.5 * np.exp(-((x - cx_) ** 2 + (y - cy_) ** 2) / rng.uniform(0.002, 0.01))
        else:
            a = rng.uniform(0, np.pi)
            d = (x - cx_) * np.sin(a) - (y - cy_) * np.cos(a)
            hfield -= 0.4 * np.exp(-(d / 0.015) ** 2)
    hfield = hfield * rng.uniform(0.02, 0.05) * sc + 0.4 * fbm(h, w, 5, 2, rng)
    gy, gx = np.gradient(hfield)
    norm = np.sqrt(gx * gx + gy * gy + 1)
    ndotl = (-gx * lx - gy * ly + lz) / norm
    hxv, hyv, hzv = lx, ly, lz + 1
    hl = np.sqrt(hxv * hxv + hyv * hyv + hzv * hzv)
    spec = np.maximum(0, (-gx * hxv - gy * hyv + hzv) / (norm * hl)) ** rng.uniform(15, 60)
    lam = pick(BODY, rng) if rng.random() < 0.72 else pick(METAL, rng, 6)  # silver laminate is common
    g = rng.normal(0, 0.2, 2)  # broad reflection gradient across the flat body
    col = lam[None, None, :] * (1 + g[0] * x + g[1] * y / max(hy, 1e-3) * 0.5)[..., None]
    rim_mask = (-sdf < rim)[..., None]
    col = np.where(rim_mask, col * 0.9 + 255 * 0.05, col)
    if rng.random() < 0.65:  # printed label on the body
        lw, lh = rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.6) * hy
        lx0, ly0 = rng.uniform(-0.15, 0.15), rng.uniform(-0.2, 0.2) * hy
        lab = (np.abs(x - lx0) < lw / 2) & (np.abs(y - ly0) < lh)
        ink = _label_pattern((x - lx0) / lw + 0.5, (y - ly0) / lh, rng, rng.uniform(10, 16) * lw / 0.3)
        col = np.where(lab[..., None], pick(LABEL, rng) * (1 - ink)[..., None], col)
    shade = amb + (1 - amb) * np.clip(ndotl, 0, 1)
    body = col * shade[..., None] + 255 * rng.uniform(0.15, 0.45) * spec[..., None]
    over(rgb, alpha, body, a_body)
    return CellLayer(rgb, alpha, {"layout": layout, "tilt_deg": round(float(np.degrees(tilt)), 1),
                                  "aspect": round(float(aspect), 2),
                                  "rotation_deg": round(float(np.degrees(theta)) % 360, 1)})


CELL_RENDERERS = {"cylindrical": render_cylindrical, "pouch": render_pouch, "prismatic": render_prismatic}


def render_cell(cls: str, area_px: float, rng: np.random.Generator, light: Light) -> CellLayer:
    """Render one cell of a class with the given silhouette area (pixels)."""
    return CELL_RENDERERS[cls](area_px, rng, light)

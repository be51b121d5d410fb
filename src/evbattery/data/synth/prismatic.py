"""Prismatic cell: a rigid aluminium can drawn as a 3-D box in perspective (2-3 visible faces),
two terminal posts and a vent on the top face, labels and bevelled edges."""

from __future__ import annotations

import numpy as np

# imported with the module, not on first use: the generator's worker processes are forked after it
from scipy.spatial import ConvexHull

from evbattery.data.synth.palette import BODY, LABEL, METAL, pick
from evbattery.data.synth.raster import CellLayer, Light, over, poly_window

_CORNERS = ((0, 0), (1, 0), (1, 1), (0, 1))


class _Camera:
    """Object -> image projection: pose (stand/lie, yaw), camera elevation, in-plane rotation, weak perspective."""

    def __init__(self, lying: bool, yaw: float, elev: float, roll: float) -> None:
        pose = np.eye(3) if not lying else np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
        c, s = np.cos(yaw), np.sin(yaw)
        self.rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ pose
        ce, se = np.cos(elev), np.sin(elev)
        cam = np.array([[1, 0, 0], [0, -se, -ce], [0, -ce, se]], float)  # rows: image x, image y (down), depth
        cr, sr = np.cos(roll), np.sin(roll)
        self.m = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ cam @ self.rot

    def normal(self, n_obj: np.ndarray) -> np.ndarray:
        """Object-frame normal -> image-frame normal (x right, y down, z toward camera)."""
        return self.m @ n_obj

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Nx3 object points -> Nx2 image points (unit scale, weak perspective)."""
        p = pts @ self.m.T
        k = 1.0 / (1.0 - p[:, 2] / 6.0)
        return p[:, :2] * k[:, None]


def _face(axis: int, sign: int, half: np.ndarray):
    """(normal, function(alpha, beta) -> 3-D points) of the box face on axis `axis`, side `sign`."""
    b, c = [i for i in range(3) if i != axis]
    n = np.zeros(3)
    n[axis] = sign

    def at(al: np.ndarray, be: np.ndarray) -> np.ndarray:
        p = np.zeros((len(al), 3))
        p[:, axis] = sign * half[axis]
        p[:, b] = (np.asarray(al) * 2 - 1) * half[b]
        p[:, c] = (np.asarray(be) * 2 - 1) * half[c]
        return p

    return n, at


def _quad(at, a0: float, a1: float, b0: float, b1: float) -> np.ndarray:
    return at(np.array([a0, a1, a1, a0]), np.array([b0, b0, b1, b1]))


def _hull_area(p: np.ndarray) -> float:
    return float(ConvexHull(p).volume)


def render_prismatic(area_px: float, rng: np.random.Generator, light: Light, n_cells: int = 1) -> CellLayer:
    """Prismatic can with terminals, vent, labels; silhouette area ~ area_px. With n_cells > 1, a module: that
    many identical cans side by side along their thickness, their posts joined by busbars."""
    half = np.array([0.5, rng.uniform(0.06, 0.17), rng.uniform(0.22, 0.4)])  # length, thickness, height
    pitch = 2 * half[1] * rng.uniform(1.0, 1.08) if n_cells > 1 else 0.0  # centre-to-centre distance of the cans
    offsets = [np.array([0.0, (k - (n_cells - 1) / 2) * pitch, 0.0]) for k in range(n_cells)]
    lying = bool(rng.random() < 0.45) and n_cells == 1  # modules stand on their base
    elev = np.radians(rng.uniform(35, 70))
    cam = _Camera(lying, rng.uniform(0, 2 * np.pi), elev, rng.uniform(0, 2 * np.pi))
    box = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
    hull = np.concatenate([box + o for o in offsets])
    sc = np.sqrt(area_px / _hull_area(cam.project(hull)))
    pr = cam.project(hull) * sc
    pad = sc * 0.12 + 3
    lo = pr.min(0) - pad
    h, w = int(np.ceil(pr[:, 1].max() + pad - lo[1])), int(np.ceil(pr[:, 0].max() + pad - lo[0]))

    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ldir, amb = light.dir, light.ambient
    hvec = ldir + np.array([0, 0, 1.0])
    hvec /= np.linalg.norm(hvec)
    can = pick(BODY, rng) if rng.random() < 0.88 else pick(METAL, rng, 5)
    top_col = [can, pick(((25, 25, 28), (60, 62, 66), (150, 150, 150)), rng, 5), pick(METAL, rng, 5)][
        int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
    gloss = rng.uniform(0.15, 0.6)
    post_r = min(0.05, half[1] * 0.55)
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    top_n = cam.normal(np.array([0, 0, 1.0]))

    def paint(polys: list[np.ndarray], col: np.ndarray, n_img: np.ndarray, weight: float = 1.0) -> None:
        """Composite flat-shaded polygons (diffuse + specular + a soft gradient across the face)."""
        cov, win = poly_window(polys, h, w)
        lit = amb + (1 - amb) * max(0.0, 0.75 * float(n_img @ ldir) + 0.25)  # fill light from the room
        spec = max(0.0, float(n_img @ hvec)) ** 12 * gloss
        g = rng.normal(0, 0.25, 2) / max(h, w)
        ramp = 1 + (xx[win] - w / 2) * g[0] + (yy[win] - h / 2) * g[1]
        over(rgb[win], alpha[win], col[None, None, :] * (lit * ramp)[..., None] + 255 * spec, cov * weight)

    def draw_can(offset: np.ndarray) -> int:
        """One can at `offset` (object frame), drawn over what is already there; returns its visible faces."""

        def px(pts3: np.ndarray) -> np.ndarray:
            return cam.project(pts3 + offset) * sc - lo

        faces = [(a, s, *_face(a, s, half)) for a in range(3) for s in (-1, 1)]
        visible = [(a, s, n, at) for a, s, n, at in faces if cam.normal(n)[2] > 0.03]

        def draw_posts() -> None:
            t = np.linspace(0, 2 * np.pi, 18, endpoint=False)
            post_h = rng.uniform(0.025, 0.05)
            for k, xc in enumerate((-0.3, 0.3)):
                ring = np.stack([xc + post_r * np.cos(t), post_r * np.sin(t), np.full_like(t, half[2])], 1)
                bot, top = px(ring), px(ring + [0, 0, post_h])
                # the post's body (side quads + bottom disc) projects to the convex hull of both rings
                body = np.concatenate([bot, top])
                metal = pick(METAL[2:3] if k == 0 else METAL[1:2], rng, 6)
                paint([body[ConvexHull(body).vertices]], metal * 0.7, cam.normal(np.array([1.0, 0, 0])))
                paint([top], metal, top_n)

        if top_n[2] <= 0.03:
            draw_posts()  # seen from below the top face: faces drawn next hide the posts' roots
        for a, s, n, at in visible:
            n_img = cam.normal(n)
            is_top = a == 2 and s == 1
            col = top_col if is_top else can
            paint([px(_quad(at, 0, 1, 0, 1))], col, n_img)
            if a == 1 and not is_top and rng.random() < 0.8:  # label on a broad face, with text lines
                a0, a1 = sorted(rng.uniform(0.08, 0.92, 2))
                b0, b1 = sorted(rng.uniform(0.1, 0.9, 2))
                lab = pick(LABEL, rng)
                paint([px(_quad(at, a0, a1, b0, b1))], lab, n_img)
                ink = lab * 0.35 if lab.mean() > 110 else np.minimum(lab + 120, 255)
                lines = [px(_quad(at, a0 + 0.04, a0 + 0.04 + rng.uniform(0.1, 0.6) * (a1 - a0),
                                   b0 + (b1 - b0) * (j + 0.3) / 5, b0 + (b1 - b0) * (j + 0.55) / 5)) for j in range(4)]
                paint(lines, ink, n_img, rng.uniform(0.5, 0.9))
            if is_top:  # vent: a small oval membrane between the posts
                t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
                vr = min(0.045, half[1] * 0.6)
                vent = px(np.stack([0.1 * vr / 0.045 * np.cos(t), vr * 0.7 * np.sin(t), np.full_like(t, half[2])], 1))
                paint([vent], pick(METAL, rng, 5) * 0.55, n_img)
        # bevelled edges: thin highlights along every edge shared by two visible faces
        edges = []
        for i, (a1_, s1, _, _at1) in enumerate(visible):
            for a2_, s2, _, _ in visible[i + 1:]:
                if a1_ == a2_:
                    continue
                other = 3 - a1_ - a2_
                p0 = np.zeros(3)
                p0[a1_], p0[a2_] = s1 * half[a1_], s2 * half[a2_]
                p1 = p0.copy()
                p0[other], p1[other] = -half[other], half[other]
                e = px(np.stack([p0, p1]))
                d = e[1] - e[0]
                nrm = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6) * max(0.6, sc * 0.006)
                edges.append(np.stack([e[0] - nrm, e[1] - nrm, e[1] + nrm, e[0] + nrm]))
        if edges:
            cov, win = poly_window(edges, h, w)
            over(rgb[win], alpha[win], np.minimum(rgb[win] * 1.25 + 25, 255), cov * 0.8)
        if top_n[2] > 0.03:
            draw_posts()
        return len(visible)

    # painter's order: the can farthest from the camera first
    order = sorted(range(n_cells), key=lambda k: float(cam.m[2] @ offsets[k]))
    n_visible = [draw_can(offsets[k]) for k in order][-1]
    if n_cells > 1 and top_n[2] > 0.03:  # busbars joining neighbours' posts in series, sides alternating
        bar = pick(METAL[:2], rng, 6)
        z = half[2] + 0.04  # on the posts
        for k in range(n_cells - 1):
            xc, y0, y1 = (0.3 if k % 2 else -0.3), offsets[k][1], offsets[k + 1][1]
            strip = np.array([[xc - post_r, y0, z], [xc + post_r, y0, z], [xc + post_r, y1, z], [xc - post_r, y1, z]])
            paint([cam.project(strip) * sc - lo], bar, top_n)
    pose = {"pose": "lying" if lying else "standing", "elevation_deg": round(float(np.degrees(elev)), 1),
            "faces_visible": n_visible}
    return CellLayer(rgb, alpha, pose if n_cells == 1 else {**pose, "pack": "module", "cells": n_cells})

"""Scene composition: background, cells at a realistic scale, shadows, distractors, lighting, camera.

Object area follows the real recycling photos (RecyBat24: mean ~7.6 % of the frame, 1.3-32 %): a
log-normal draw clipped to [1 %, 35 %], independent of the class. The mask is computed from the
renderer's own coverage layers: cell coverage >= 0.5 and occluder coverage < 0.5.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from evbattery.data.synth import packs
from evbattery.data.synth.backgrounds import render_background_float, studio_backdrop
from evbattery.data.synth.cells import render_cell
from evbattery.data.synth.distractors import BOARD, KINDS, draw_distractor
from evbattery.data.synth.raster import Light, _from_bank, blur, blur_rgb, value_noise

AREA_MIN, AREA_MAX = 0.01, 0.35
AREA_LOG_MEAN, AREA_LOG_SD = np.log(0.064), 0.62  # mean of the clipped log-normal ~ 0.08


@dataclass
class Scene:
    """A rendered photo (uint8 RGB), its mask (uint8 0/255) and the layers that made the mask."""

    image: np.ndarray
    mask: np.ndarray
    cell_coverage: np.ndarray
    occluder_coverage: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def sample_area(rng: np.random.Generator) -> float:
    """Fraction of the frame covered by the cell(s)."""
    return float(np.clip(np.exp(rng.normal(AREA_LOG_MEAN, AREA_LOG_SD)), AREA_MIN, AREA_MAX))


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(a)
    h, w = a.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = a[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _window(alpha: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    if not len(rows):
        return None
    h, w = alpha.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)), slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)))


def _cast_shadow(img: np.ndarray, alpha: np.ndarray, light: Light, height: float, rng: np.random.Generator) -> None:
    """Darken the frame under and beside an object (soft drop shadow + tight contact shadow), in place."""
    lx, ly, lz = (float(v) for v in light.dir)
    k = height / max(lz, 0.3)
    dy, dx = round(-ly * k), round(-lx * k)
    r = max(1.0, height * 0.6)
    win = _window(alpha, int(abs(dy) + abs(dx) + 3 * r + 2))
    if win is None:
        return
    a = alpha[win]
    soft = blur(_shift(a, dy, dx), r)
    contact = blur(a, max(0.7, height * 0.15))
    shade = 1 - rng.uniform(0.25, 0.5) * soft - 0.25 * contact
    img[win] *= np.clip(shade, 0.3, 1)[..., None]


def _sensor_noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((h, w, 1), dtype=np.float32) + 0.4 * rng.standard_normal((h, w, 3), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    return yy, xx


def _paste(a: np.ndarray, win: tuple[slice, slice], size: int) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    out[win] = a
    return out


def _place(canvas: tuple[int, int], size: int, rng: np.random.Generator) -> tuple[int, int]:
    h, w = canvas
    return int(rng.integers(0, max(1, size - h + 1))), int(rng.integers(0, max(1, size - w + 1)))


def render_scene(cls: str, family: str, size: int, rng: np.random.Generator,
                 pack_shares: Mapping[str, float] | None = None, board_share: float = 0.0,
                 studio_share: float = 0.0) -> Scene:
    """One synthetic photo of a class on a background family; pack_shares (class -> share of photos showing a
    pack or module) defaults to packs.PACK_SHARES, board_share is the share of photos with a
    circuit board beside the cells, studio_share of photos on a product shot's white backdrop instead of the
    family's surface (default none of either; at 0 no random number is drawn, so older photos stay as they were)."""
    az, el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(35, 75))
    light = Light(np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)]), rng.uniform(0.3, 0.5))
    studio = studio_share > 0 and rng.random() < studio_share
    img = studio_backdrop(size, rng) if studio else render_background_float(family, size, rng)
    n_cells = 2 if rng.random() < 0.2 else 1
    area = sample_area(rng)
    shares = [1.0] if n_cells == 1 else [w := rng.uniform(0.45, 0.6), 1 - w]
    pack_share = (packs.PACK_SHARES if pack_shares is None else pack_shares).get(cls, 0.0)
    pack = pack_share > 0 and rng.random() < pack_share
    if pack:
        shares = [1.0]
    cell_cov = np.zeros((size, size), np.float32)
    placed, poses = [], []
    for share in shares:
        a_px = area * share * size * size
        for _ in range(4):  # shrink until the cell fits in the frame
            layer = packs.render_pack(cls, a_px, rng, light) if pack else render_cell(cls, a_px, rng, light)
            fit = (size - 2) / max(layer.alpha.shape)
            if fit >= 1:
                break
            a_px *= fit * fit * 0.95
        h, w = layer.alpha.shape
        for _ in range(10):  # a second cell should rarely overlap the first
            y, x = _place((h, w), size, rng)
            if not (cell_cov[y:y + h, x:x + w] * layer.alpha[: size - y, : size - x]).sum() > 0.05 * layer.alpha.sum():
                break
        a = layer.alpha[: size - y, : size - x]
        win = (slice(y, y + a.shape[0]), slice(x, x + a.shape[1]))
        cell_cov[win] += a * (1 - cell_cov[win])
        placed.append((win, layer.rgb[: a.shape[0], : a.shape[1]], a))
        poses.append(layer.pose)
    if pack:
        n_cells = int(poses[0]["cells"])
    _cast_shadow(img, cell_cov, light, size * rng.uniform(0.01, 0.035), rng)
    for win, rgb, a in placed:
        img[win] += (rgb - img[win]) * a[..., None]

    # distractors: drawn over everything; the pixels they cover leave the mask
    occ = np.zeros((size, size), np.float32)
    kinds: list[str] = []
    n_d = int(rng.choice(4, p=[0.4, 0.35, 0.17, 0.08]))
    cell_px = max(float((cell_cov >= 0.5).sum()), 1.0)
    ys, xs = np.nonzero(cell_cov >= 0.5)
    board = board_share > 0 and rng.random() < board_share
    for i in range(n_d + board):
        kind = BOARD if board and i == n_d else str(KINDS[int(rng.integers(len(KINDS)))])
        # never hide more than ~30 % of the cell; a board lies beside the cells (a few tries to find room)
        limit = 0.05 * cell_px if kind == BOARD else 0.3 * cell_px - float((occ >= 0.5)[cell_cov >= 0.5].sum())
        for _ in range(6 if kind == BOARD else 1):
            if kind != BOARD and rng.random() < 0.35 and len(ys):  # aim at the cell sometimes, so occlusion happens
                j = int(rng.integers(len(ys)))
                centre = np.array([xs[j], ys[j]], float)
            else:
                centre = rng.uniform(0, size, 2)
            rgb, a, win = draw_distractor(kind, size, centre, rng)
            cell_w, occ_w = cell_cov[win] >= 0.5, occ[win]
            if ((a >= 0.5) & cell_w & (occ_w < 0.5)).sum() <= limit:
                break
        else:
            continue
        _cast_shadow(img, _paste(a, win, size), light, size * 0.008, rng)
        lit = light.ambient + (1 - light.ambient) * float(light.dir[2])
        img[win] += (rgb * lit - img[win]) * a[..., None]
        occ[win] += a * (1 - occ_w)
        kinds.append(kind)
    mask = ((cell_cov >= 0.5) & (occ < 0.5)).astype(np.uint8) * 255

    # light colour, exposure, illumination gradient and vignette
    temp = rng.uniform(-1, 1)
    tint = np.array([1 + 0.06 * temp, 1.0, 1 - 0.07 * temp], np.float32)
    gain = rng.uniform(0.85, 1.15)
    # the light field is smooth: build it at 32x32 and upsample (cheap), then one multiply
    yy, xx = _grid(32)
    ramp = 1 + rng.uniform(0, 0.2) * (xx * float(np.cos(az)) + yy * float(np.sin(az)))
    vig = 1 - rng.uniform(0, 0.35) * (xx * xx + yy * yy) * 2
    field32 = (gain * ramp * vig * (1 + 0.03 * (value_noise(32, 32, 2, rng) - 0.5))).astype(np.float32)
    light_field = np.asarray(Image.fromarray(field32, mode="F").resize((size, size), Image.BILINEAR))
    img *= light_field[..., None] * tint

    # camera: defocus / motion blur, sensor noise (luma + weaker chroma)
    blur_r = float(rng.uniform(0.3, 1.0) * size / 256) if rng.random() < 0.5 else 0.0
    img = blur_rgb(img, blur_r)
    sigma = float(rng.uniform(1.0, 5.0))
    # sensor noise (luma + weaker chroma), cropped from a per-process bank of noise fields
    img += _from_bank(("sensor",), _sensor_noise, size, size, rng) * sigma
    assert img.dtype == np.float32, img.dtype  # float64 creeping in doubles the cost
    img += 0.5
    image = np.clip(img, 0, 255, out=img).astype(np.uint8)
    meta = {
        "n_cells": n_cells, "area_fraction": round(float((mask > 0).mean()), 5), "target_area": round(area, 5),
        "pose": poses, "occluders": kinds, "backdrop": "studio" if studio else "family",
        "occluded_fraction": round(1 - float((mask > 0).sum()) / cell_px, 4),
        "lighting": {"azimuth_deg": round(float(np.degrees(az)) % 360, 1), "elevation_deg": round(float(np.degrees(el)), 1),
                     "ambient": round(light.ambient, 3), "temperature": round(float(temp), 3), "gain": round(float(gain), 3)},
        "camera": {"blur": round(blur_r, 3), "noise_sigma": round(sigma, 2), "jpeg_quality": int(rng.integers(70, 96))},
    }
    return Scene(image, mask, cell_cov, occ, meta)

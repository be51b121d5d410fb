"""Contact sheet of a dataset for people: a grid of photos with class + family captions and the mask
outline drawn over each photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from evbattery.core.config import SPLITS
from evbattery.core.imageio import load_mask, load_rgb
from evbattery.data.layout import DatasetError, DatasetLayout

OUTLINE = (60, 255, 60)


def _outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = Image.fromarray(mask)
    edge = np.asarray(m, bool) & ~np.asarray(m.filter(ImageFilter.MinFilter(3)), bool)
    out = image.copy()
    out[edge] = OUTLINE
    return out


def contact_sheet(data: Path, n: int = 24, tile: int = 160, cols: int = 6, seed: int = 0) -> Image.Image:
    """A grid of n samples (classes interleaved) with captions and mask outlines."""
    layout = DatasetLayout(data)
    samples = [s for split in SPLITS for s in layout.samples(split)]
    if not samples:
        raise DatasetError(f"no images under {data} (generate some with `evbattery data synth`)")
    card = layout.read_card().get("images", {})
    rng = np.random.default_rng(seed)
    by_cls: dict[str, list] = {}
    for s in samples:
        by_cls.setdefault(s.cls, []).append(s)
    for v in by_cls.values():
        rng.shuffle(v)
    picked = []
    while len(picked) < min(n, len(samples)):
        for v in by_cls.values():
            if v and len(picked) < n:
                picked.append(v.pop())
    rows = (len(picked) + cols - 1) // cols
    cap = 14
    sheet = Image.new("RGB", (cols * tile, rows * (tile + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(picked):
        img = _outlined(load_rgb(s.image), load_mask(s.mask))
        r, c = divmod(i, cols)
        sheet.paste(Image.fromarray(img).resize((tile, tile), Image.BILINEAR), (c * tile, r * (tile + cap) + cap))
        family = card.get(s.key, {}).get("background", "?")
        draw.text((c * tile + 3, r * (tile + cap) + 1), f"{s.cls} | {family}", fill=(0, 0, 0))
    return sheet


def write_contact_sheet(data: Path, out: Path, n: int = 24, tile: int = 160, colors: int = 0) -> Path:
    """Write the contact sheet PNG (palette PNG of `colors` colours when > 0, for small files); returns its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(data, n, tile)
    if colors:
        sheet = sheet.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(out, format="PNG", optimize=True)
    return out

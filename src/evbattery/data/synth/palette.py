"""One colour palette shared by all three classes (wraps, laminates, cans, labels) and one for metal
parts (caps, tabs, posts), so colour alone says little about the class."""

from __future__ import annotations

import numpy as np

# Wrap / laminate / can colours seen on retired EV and consumer cells.
BODY: tuple[tuple[int, int, int], ...] = (
    (35, 80, 165), (25, 120, 190), (30, 130, 75), (190, 40, 40), (225, 190, 40), (110, 55, 140),
    (28, 28, 32), (70, 72, 78), (185, 188, 192), (140, 142, 148), (225, 115, 30), (35, 150, 160),
    (230, 230, 225), (95, 60, 40), (160, 30, 90), (120, 160, 60),
)
# Label / band accents (also used as body colours via BODY; white and black labels are common).
LABEL: tuple[tuple[int, int, int], ...] = BODY + ((240, 240, 236), (240, 240, 236), (20, 20, 22))
# Nickel-plated steel, aluminium, copper, brass-ish nickel.
METAL: tuple[tuple[int, int, int], ...] = ((190, 192, 196), (205, 207, 210), (200, 140, 100), (185, 175, 150))


def pick(palette: tuple[tuple[int, int, int], ...], rng: np.random.Generator, jitter: float = 10.0) -> np.ndarray:
    """A palette colour with small random variation (float RGB)."""
    c = np.asarray(palette[int(rng.integers(len(palette)))], np.float32)
    return np.clip(c * rng.uniform(0.85, 1.12) + rng.normal(0, jitter, 3), 0, 255)

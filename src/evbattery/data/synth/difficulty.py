"""How much do colour statistics alone tell the class? A colour-histogram + logistic-regression
baseline on images and on cutouts. On ρ = 0 data it should stay near chance (33 %); if not, colour,
brightness or size leak the class and the generator needs fixing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetLayout

BINS = 8  # per channel -> 512-bin joint RGB histogram


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """Normalised joint RGB histogram (BINS^3) plus per-channel mean and std."""
    q = (image.reshape(-1, 3).astype(np.int32) * BINS) // 256
    idx = (q[:, 0] * BINS + q[:, 1]) * BINS + q[:, 2]
    hist = np.bincount(idx, minlength=BINS**3).astype(np.float64) / len(idx)
    flat = image.reshape(-1, 3).astype(np.float64) / 255
    return np.concatenate([np.sqrt(hist), flat.mean(0), flat.std(0)])


def _features(layout: DatasetLayout, split: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    samples = layout.require_split(split)
    x = np.stack([colour_histogram(load_rgb(s.path(kind))) for s in samples])
    y = np.array([layout.classes.index(s.cls) for s in samples])
    return x, y


def histogram_baseline(data: Path) -> dict[str, Any]:
    """Test accuracy of histogram + logistic regression trained on train, per input kind."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    layout = DatasetLayout(data)
    out: dict[str, Any] = {}
    for kind in ("images", "cutouts"):
        xtr, ytr = _features(layout, "train", kind)
        xte, yte = _features(layout, "test", kind)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
        clf.fit(xtr, ytr)
        out[kind] = {"test_accuracy": round(float((clf.predict(xte) == yte).mean()), 4),
                     "train_accuracy": round(float((clf.predict(xtr) == ytr).mean()), 4)}
    out["n_train"], out["n_test"] = len(ytr), len(yte)
    return out

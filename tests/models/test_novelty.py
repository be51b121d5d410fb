"""The novelty score (models/novelty.py) on features whose distribution is known: held-out photos from the
training distribution stay under 1, shifted ones go over, and the score survives both ways of storing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evbattery.models.novelty import MIN_TRAIN, NoveltyScore, fit_novelty, novelty_from_checkpoint


def _blobs(n: int, seed: int, d: int = 60, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in d dimensions: class means apart along the first axes, most variance along 10 axes and a
    little along the rest; `shift` moves every photo off those axes (what a new domain does to the features)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    scale = np.r_[np.full(10, 3.0), np.full(d - 10, 0.3)]
    centres = np.zeros((3, d))
    centres[np.arange(3), np.arange(3)] = 8.0
    x = centres[y] + rng.normal(0, 1, (n, d)) * scale
    x[:, 20:] += shift
    return x, y


def test_held_out_photos_stay_familiar_and_shifted_ones_do_not() -> None:
    x, y = _blobs(900, 0)
    score, meta = fit_novelty(x, y, _blobs(300, 1)[0])
    assert score is not None and meta["components"] == 32 and meta["n_train"] == 900
    held = score(_blobs(2000, 2)[0])
    assert 0.002 < float(np.mean(held > 1)) < 0.04  # the val photos' 99th percentile: about 1 % beyond it
    assert float(np.mean(score(_blobs(500, 3, shift=0.5)[0]) > 1)) > 0.95
    # the class means count: a photo at another class's mean is familiar, one between them far less so
    assert score(np.eye(60)[:3] * 8.0).max() < 0.5


def test_too_few_photos_fit_no_score() -> None:
    x, y = _blobs(MIN_TRAIN - 1, 0)
    score, meta = fit_novelty(x, y, _blobs(30, 1)[0])
    assert score is None and "too few photos" in meta["skipped"]
    assert novelty_from_checkpoint({"state_dict": {}, "meta": {}}) is None


def test_features_that_never_vary_do_not_divide_by_zero() -> None:
    live = np.r_[np.ones(40), np.zeros(20)]
    x, y = _blobs(200, 0)
    x = x * live  # dead units: ReLU features that are 0 for every photo seen
    score, _ = fit_novelty(x, y, _blobs(60, 1)[0] * live)
    assert np.isfinite(score.variances).all() and score.noise_variance > 0
    still, moved = score(_blobs(200, 2)[0] * live), score(_blobs(200, 2)[0])
    assert np.isfinite(moved).all() and float(np.mean(still > 1)) < 0.05
    assert (moved > still).all() and float(np.mean(moved > 1)) > 0.5  # waking a dead unit moves a photo away


def test_the_score_survives_the_checkpoint_and_the_onnx_text() -> None:
    x, y = _blobs(300, 0)
    score, _ = fit_novelty(x, y, _blobs(60, 1)[0])
    probe = _blobs(20, 5, shift=0.2)[0]
    from_ckpt = novelty_from_checkpoint({"novelty": {k: v.clone() for k, v in score.state().items()}})
    from_text = NoveltyScore.from_text(score.to_text())
    for other in (from_ckpt, from_text):
        np.testing.assert_allclose(other(probe), score(probe), rtol=1e-5)  # float32 storage
    assert all(isinstance(v, torch.Tensor) for v in score.state().values())


@pytest.mark.parametrize("n_val", [9, 0])
def test_too_few_val_photos_fit_no_score(n_val: int) -> None:
    x, y = _blobs(300, 0)
    assert fit_novelty(x, y, _blobs(n_val, 1)[0][:n_val])[0] is None

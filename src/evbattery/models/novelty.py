"""Is a photo unlike the photos a classifier was trained on? A novelty score on the features its head sees.

Why: a model trained only on synthetic photos answers real photos at 0.9-1.0 confidence and is right on about
two of three (docs/benchmarks.md, "Real photos"), so its confidence cannot say that it is out of its depth. The
distance of the photo's pooled features from the training photos' can: on the recipe's models it separates
real photos from held-out synthetic ones almost perfectly (ROC AUC 0.995-1.0), where the logits alone do not
(0.52-0.59; docs/benchmarks.md, "Does the product know a photo is unlike its training photos?").

The score is the Mahalanobis distance to the nearest class mean under one covariance shared by the classes
(Lee et al. 2018), with the covariance of a probabilistic PCA (Tipping & Bishop 1999): the top `k` directions of
the class-centred training features with their own variances, and one noise variance for everything else. It
needs k x D + C x D numbers instead of a D x D matrix, and the distance off the main directions, which a plain
PCA would drop, is what tells real photos apart. The score is divided by its 99th percentile on the validation
photos, so `novelty > 1` reads "further from the training photos than 99 % of held-out photos like them".
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

SCORE = "ppca_mahalanobis"
COMPONENTS = 32      # principal directions kept (measured: 32 and 64 separate real from synthetic equally)
QUANTILE = 0.99      # of the val photos' scores: novelty 1.0
MIN_TRAIN, MIN_VAL = 50, 10  # fewer photos than this: no score is fitted (it would flag everything)


@dataclass
class NoveltyScore:
    """The fitted score: class means (C, D), principal directions (k, D) with their variances (k,), the noise
    variance of the remaining directions, and the val quantile the score is divided by."""

    means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    noise_variance: float
    threshold: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(N, D) pooled features -> (N,) novelty: distance to the nearest class / the val quantile."""
        return self.distance(features) / self.threshold

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean, (N,)."""
        f = np.asarray(features, np.float64)
        out = np.full(len(f), np.inf)
        for m in self.means:
            r = f - m
            z = r @ self.components.T
            resid = r - z @ self.components  # off the principal directions, computed directly (no cancellation)
            out = np.minimum(out, (z ** 2 / self.variances).sum(1) + (resid ** 2).sum(1) / self.noise_variance)
        return out

    # -- storage: tensors in the checkpoint, base64 .npz in an ONNX file's metadata --------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for the checkpoint's "novelty" entry (torch.load(weights_only=True) reads them back)."""
        return {"means": torch.from_numpy(self.means.astype(np.float32)),
                "components": torch.from_numpy(self.components.astype(np.float32)),
                "variances": torch.from_numpy(self.variances.astype(np.float32)),
                "noise_variance": torch.tensor(self.noise_variance, dtype=torch.float64),
                "threshold": torch.tensor(self.threshold, dtype=torch.float64)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NoveltyScore:
        def arr(key: str) -> np.ndarray:
            v = state[key]
            return (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)).astype(np.float64)

        return cls(arr("means"), arr("components"), arr("variances"), float(arr("noise_variance")),
                   float(arr("threshold")))

    def to_text(self) -> str:
        """The state as base64 of an .npz (for an ONNX file's metadata_props)."""
        buf = io.BytesIO()
        np.savez(buf, **{k: v.numpy() for k, v in self.state().items()})
        return base64.b64encode(buf.getvalue()).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> NoveltyScore:
        with np.load(io.BytesIO(base64.b64decode(text))) as z:
            return cls.from_state({k: z[k] for k in z.files})


def fit_novelty(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
                components: int = COMPONENTS, quantile: float = QUANTILE) -> tuple[NoveltyScore | None, dict[str, Any]]:
    """Fit the score on the training photos' features and scale it by the val photos' `quantile`.

    Returns (score, plain metadata for the checkpoint); (None, {"skipped": why}) with too few photos.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(train_features, np.float64)
    y = np.asarray(train_labels)
    classes = np.unique(y)
    if len(x) < MIN_TRAIN or len(val_features) < MIN_VAL:
        why = (f"too few photos to fit a novelty score ({len(x)} training, {len(val_features)} val; it needs "
               f"{MIN_TRAIN} and {MIN_VAL})")
        log.info(why)
        return None, {"skipped": why}
    means = np.stack([x[y == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    k = int(min(components, x.shape[1] - 1, (len(x) - len(classes)) // 2))
    # through the D x D covariance: 0.7 s instead of 5 s for a full SVD of 3,000 x 1,280 features (2 cores)
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(centred)
    floor = 1e-6 * float(pca.explained_variance_[0])  # features that never vary (e.g. ReLU-dead) must not divide by 0
    score = NoveltyScore(means, pca.components_.astype(np.float64), np.maximum(pca.explained_variance_, floor),
                         max(float(pca.noise_variance_), floor), 1.0)
    score.threshold = float(np.quantile(score.distance(val_features), quantile))
    meta = {"score": SCORE, "components": k, "quantile": quantile, "threshold": score.threshold,
            "n_train": len(x), "n_val": len(val_features),
            "val_flagged": float(np.mean(score(val_features) > 1.0))}
    return score, meta


def novelty_from_checkpoint(ckpt: dict[str, Any]) -> NoveltyScore | None:
    """The checkpoint's novelty score, or None (older checkpoints, segmenters, too few photos to fit)."""
    state = ckpt.get("novelty")
    return NoveltyScore.from_state(state) if state else None

"""Would a "this photo is unlike the training photos" flag help on real photos? A measured answer.

Takes a trained full-image classifier, its synthetic dataset and the real-photo benchmark. Fits two feature-space
novelty scores on the synthetic *val* photos' pooled features (what the linear head sees): the Mahalanobis
distance to the nearest class mean under a shared Ledoit-Wolf covariance (Lee et al. 2018), and the mean cosine
distance to the 5 nearest val photos. Then asks two questions:
- What share of real photos lies beyond the 95th / 99th percentile of held-out synthetic *test* photos (where a
  flag calibrated on the training distribution would fire)?
- Among real photos, how well does each score rank the model's mistakes above its correct answers (ROC AUC),
  against the plain top-probability the API already reports?
Prints JSON and writes <reports>/novelty_study.json.

    python scripts/study_novelty.py --model models/best_model_images.pth --data data/real224
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from evbattery.core.imageio import load_rgb
from evbattery.core.io import write_json_report
from evbattery.data.layout import DatasetLayout
from evbattery.evaluation.photo_folder import list_photos
from evbattery.inference.predictor import Predictor
from evbattery.models.backbones import classifier_head
from evbattery.training.probe import pooled_features


def per_class(samples: list, n: int) -> list:
    """The first n samples of each class (samples come sorted by class)."""
    seen: dict[str, int] = {}
    out = []
    for s in samples:
        if seen.get(s.cls, 0) < n:
            out.append(s)
            seen[s.cls] = seen.get(s.cls, 0) + 1
    return out


def study(model: Path, data: Path, real: list[Path], n_ref: int, n_held: int) -> dict:
    pred = Predictor.from_checkpoint(model, fast=False, bf16=False)
    if pred.input_type != "images":
        raise SystemExit(f"error: {model} is a {pred.input_type} model; the study takes a full-image model")
    head = classifier_head(pred.model, pred.meta["arch"])
    classes = pred.classes

    def features(paths: list[Path]) -> np.ndarray:
        x = torch.stack([pred.prepare(load_rgb(p)) for p in paths])
        return pooled_features(pred.model, head, x, (pred.mean, pred.std), batch_size=16, progress=True)

    layout = DatasetLayout(data)
    ref, held = per_class(layout.require_split("val"), n_ref), per_class(layout.require_split("test"), n_held)
    photos = [ph for folder in real for ph in list_photos(folder)]
    f_ref, f_held = features([s.image for s in ref]), features([s.image for s in held])
    f_real = features([p for p, _ in photos])
    y_ref = np.array([classes.index(s.cls) for s in ref])
    y_real = np.array([classes.index(c) for _, c in photos])

    logits = f_real @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    wrong = prob.argmax(1) != y_real

    means = np.stack([f_ref[y_ref == k].mean(0) for k in range(len(classes))])
    cov = LedoitWolf().fit(f_ref - means[y_ref])
    unit_ref = f_ref / np.linalg.norm(f_ref, axis=1, keepdims=True)
    scores = {
        "mahalanobis": lambda f: np.min([cov.mahalanobis(f - m) for m in means], axis=0),
        "knn_cosine": lambda f: 1 - np.sort((f / np.linalg.norm(f, axis=1, keepdims=True)) @ unit_ref.T,
                                            axis=1)[:, -5:].mean(1),
    }
    out: dict = {"model": str(model), "data": str(data), "real": [str(r) for r in real], "n_ref": len(ref),
                 "n_held_out_synthetic": len(held), "n_real": len(photos), "real_wrong": int(wrong.sum()),
                 "auroc_mistakes_by_low_top_probability": round(float(roc_auc_score(wrong, -prob.max(1))), 3)}
    for name, score in scores.items():
        s_held, s_real = score(f_held), score(f_real)
        out[name] = {
            "real_beyond_synthetic_q95": round(float((s_real > np.quantile(s_held, 0.95)).mean()), 3),
            "real_beyond_synthetic_q99": round(float((s_real > np.quantile(s_held, 0.99)).mean()), 3),
            "auroc_real_vs_synthetic": round(float(roc_auc_score(
                np.r_[np.zeros(len(s_held)), np.ones(len(s_real))], np.r_[s_held, s_real])), 3),
            "auroc_mistakes_on_real": round(float(roc_auc_score(wrong, s_real)), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/best_model_images.pth"))
    ap.add_argument("--data", type=Path, default=Path("data/real224"), help="the model's synthetic dataset")
    ap.add_argument("--real", type=Path, nargs="+",
                    default=[Path("data/real_photos/dev"), Path("data/real_photos/test")])
    ap.add_argument("--n-ref", type=int, default=100, help="synthetic val photos per class the scores are fitted on")
    ap.add_argument("--n-held", type=int, default=60, help="synthetic test photos per class for the thresholds")
    args = ap.parse_args()
    result = study(args.model, args.data, args.real, args.n_ref, args.n_held)
    print(json.dumps(result, indent=1))
    print(f"wrote {write_json_report('novelty_study', result)}")


if __name__ == "__main__":
    main()

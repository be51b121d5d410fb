"""Every model on a folder of real photos without masks (`evaluate --data <folder>`): `<folder>/<class>/<photo>`.

The image models see the photos; the cutout models see cutouts made from the segmenter's predicted masks (the
path an uploaded photo without a mask takes in the API). Balanced accuracy, because real sets are unbalanced,
with a Wilson 95 % interval; per-class recall, the confusion matrix, every photo's prediction, and how far each
model's confidence holds (calibration error, log-likelihood, wrong answers flagged "unsure"). Results go to
reports/eval_photos_<folder>.json and .png, which the UI's Models page shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evbattery.core.config import CLASSES
from evbattery.core.imageio import ImageDecodeError, load_rgb, readable_suffixes
from evbattery.core.metrics import expected_calibration_error, wilson_interval
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetError
from evbattery.inference.agreement import is_unfamiliar, is_unsure
from evbattery.inference.cpu_onnx import attach_onnx_runtime
from evbattery.inference.predictor import Prediction, Predictor
from evbattery.inference.segmenter import load_segmenter
from evbattery.models.registry import discover_models, segmenter_path


def is_photo_folder(folder: Path) -> bool:
    """True for a folder of <class>/ subfolders and no dataset card (not a processed dataset)."""
    folder = Path(folder)
    return (folder.is_dir() and not (folder / "dataset.json").is_file()
            and any((folder / c).is_dir() for c in CLASSES))


def list_photos(folder: Path) -> list[tuple[Path, str]]:
    """(photo, class) for every readable-type file under <folder>/<class>/, sorted; a clear error when empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    suffixes = readable_suffixes()
    photos = [(p, c) for c in CLASSES if (folder / c).is_dir()
              for p in sorted((folder / c).rglob("*")) if p.is_file() and p.suffix.lower() in suffixes]
    if not photos:
        raise DatasetError(f"{folder}: no photos under {', '.join(f'{c}/' for c in CLASSES)}")
    return photos


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                      level: float = 0.95) -> dict[str, Any]:
    """Mean per-class recall over the classes present, with a Wilson interval.

    The interval is Wilson's for a proportion with the effective sample size n_eff = p(1-p) / var, where var is
    the variance of the mean of the per-class recalls (independent binomials, each recall's variance taken at
    (k + 1) / (n + 2) so that a class with recall 0 or 1 on a few photos still counts as uncertain); with equal
    class sizes this is close to the plain Wilson interval on all photos.
    """
    recalls, variances = [], []
    per_class = {}
    for k in range(n_classes):
        sel = y_true == k
        n = int(sel.sum())
        if not n:
            continue
        hits = int((y_pred[sel] == k).sum())
        r = hits / n
        smoothed = (hits + 1) / (n + 2)
        recalls.append(r)
        variances.append(smoothed * (1 - smoothed) / n)
        per_class[k] = {"n": n, "recall": r, "ci": wilson_interval(round(r * n), n, level)}
    p = float(np.mean(recalls))
    var = float(np.sum(variances)) / len(recalls) ** 2
    n_eff = p * (1 - p) / var if var > 0 else float(len(y_true))
    return {"value": p, "ci": wilson_interval(p * n_eff, n_eff, level), "n_eff": n_eff, "per_class": per_class}


def confidence_report(y_true: np.ndarray, preds: list[Prediction]) -> dict[str, Any]:
    """How far a model's confidence can be trusted on these photos: "ece" (expected calibration error), "nll" (mean
    negative log-likelihood of the true class), "mean_confidence", and how many wrong and right answers come with
    the note's "unsure" (inference.agreement.is_unsure), as {"n", "unsure"}; for a model with a novelty score
    (models/novelty.py) also "unfamiliar": the share of photos unlike its training photos, and how many wrong and
    right answers came for such photos."""
    probs = np.array([[p.probabilities.get(c, 0.0) for c in CLASSES] for p in preds], np.float64)
    true_p = np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0)
    wrong = np.array([p.predicted_class != CLASSES[k] for p, k in zip(preds, y_true, strict=True)])
    unsure = np.array([is_unsure(p) for p in preds])
    out = {"ece": expected_calibration_error(probs, y_true), "nll": float(-np.log(true_p).mean()),
           "mean_confidence": float(probs.max(1).mean()),
           "wrong_answers": {"n": int(wrong.sum()), "unsure": int((wrong & unsure).sum())},
           "right_answers": {"n": int((~wrong).sum()), "unsure": int((~wrong & unsure).sum())}}
    if preds and all(p.novelty is not None for p in preds):
        far = np.array([is_unfamiliar(p) for p in preds])
        out["unfamiliar"] = float(far.mean())
        out["wrong_answers"]["unfamiliar"] = int((wrong & far).sum())
        out["right_answers"]["unfamiliar"] = int((~wrong & far).sum())
    return out


def evaluate_photo_folder(folder: Path, model_dir: Path, progress: bool = True, device: Any = None) -> dict[str, Any]:
    """Every model in model_dir on the photos of folder: {"folder", "n", "classes", "models": {name: result},
    "photos": [{file, class, <model>: {predicted_class, confidence}}], "skipped": [...], "notes": [...]}."""
    from tqdm import tqdm

    photos = list_photos(folder)
    models = discover_models(model_dir)
    if not models:
        raise DatasetError(f"no best_model_*.pth in {model_dir}; train a model first")
    predictors = {name: Predictor.from_checkpoint(path, device=device) for name, path in models.items()}
    segmenter = load_segmenter(segmenter_path(model_dir), device)
    for runner in [*predictors.values(), *([segmenter] if segmenter is not None else [])]:
        attach_onnx_runtime(runner, len(photos))
    notes = []
    if segmenter is None and any(p.input_type == "cutouts" for p in predictors.values()):
        notes.append(f"no segmenter at {segmenter_path(model_dir)}: cutout models skipped (they need a mask)")
        predictors = {n: p for n, p in predictors.items() if p.input_type != "cutouts"}
    rows, skipped, answers = [], [], {n: [] for n in predictors}
    for path, cls in tqdm(photos, desc="real photos", unit="photo", disable=not progress):
        try:
            image = load_rgb(path)
        except ImageDecodeError as e:
            skipped.append(str(e))
            continue
        cutout = make_cutout(image, segmenter.predict_mask(image)) if segmenter is not None else None
        row: dict[str, Any] = {"file": str(path), "class": cls}
        for name, pred in predictors.items():
            (p,) = pred.predict([cutout if pred.input_type == "cutouts" else image])
            row[name] = {"predicted_class": p.predicted_class, "confidence": round(p.confidence, 4),
                         "novelty": p.novelty}
            answers[name].append(p)
        rows.append(row)
    if not rows:
        raise DatasetError(f"{folder}: none of the {len(photos)} photos could be read")
    y_true = np.array([CLASSES.index(r["class"]) for r in rows])
    results = {}
    for name, preds in answers.items():
        y_pred = np.array([CLASSES.index(p.predicted_class) if p.predicted_class in CLASSES else -1 for p in preds])
        ba = balanced_accuracy(y_true, y_pred, len(CLASSES))
        confusion = [[int(((y_true == i) & (y_pred == j)).sum()) for j in range(len(CLASSES))]
                     for i in range(len(CLASSES))]
        acc = float((y_true == y_pred).mean())
        results[name] = {
            "input": predictors[name].input_type + (" (segmenter masks)" if predictors[name].input_type == "cutouts"
                                                    else ""),
            "arch": predictors[name].meta.get("arch", "resnet18"),
            "balanced_accuracy": ba["value"], "balanced_accuracy_ci": ba["ci"],
            "accuracy": acc, "accuracy_ci": wilson_interval(int((y_true == y_pred).sum()), len(y_true)),
            "recall": {CLASSES[k]: v for k, v in ba["per_class"].items()},
            "confusion": confusion, "chance": 1 / len(CLASSES),
            **confidence_report(y_true, preds),
        }
    counts = {c: int((y_true == k).sum()) for k, c in enumerate(CLASSES)}
    return {"folder": str(folder), "n": len(rows), "counts": counts, "classes": list(CLASSES),
            "model_dir": str(model_dir), "models": results, "photos": rows, "skipped": skipped, "notes": notes}


def write_photo_report(result: dict[str, Any], folder: Path | None = None) -> tuple[Path, Path]:
    """reports/eval_photos_<folder name>.json and a PNG with one confusion matrix per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evbattery.core.io import atomic_write_bytes, reports_dir, write_json_report

    name = Path(result["folder"]).name or "photos"
    out = folder or reports_dir()
    json_path = write_json_report(f"eval_photos_{name}", result, out)
    models = result["models"]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.2 * max(len(models), 1), 4.2), squeeze=False)
    for ax, (m, r) in zip(axes[0], models.items(), strict=False):
        cm = np.asarray(r["confusion"])
        ax.imshow(cm, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(len(result["classes"])), result["classes"], rotation=30)
        ax.set_yticks(range(len(result["classes"])), result["classes"])
        lo, hi = r["balanced_accuracy_ci"]
        ax.set_title(f"{m}: balanced acc {r['balanced_accuracy']:.1%}\n(95 % CI {lo:.1%}–{hi:.1%})", fontsize=9)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("true")
    fig.suptitle(f"{result['n']} real photos in {name}", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    png = out / f"eval_photos_{name}.png"
    atomic_write_bytes(png, buf.getvalue())
    return json_path, png

"""Classification metrics (scikit-learn), mask IoU and the confusion-matrix figure."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

ECE_BINS = 15
# Cell area as a fraction of the frame (from the mask), in bins that double: small cells are where a
# full-frame model fails first (a 2 % cell is ~32 x 32 px of a 224-px input, among distractors).
CELL_SIZE_EDGES = (0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 1.0)


def expected_calibration_error(probs: np.ndarray, y_true: list[int] | np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017, eq. 3): sum over equal-width confidence bins of |acc - conf| x bin share."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def classification_metrics(y_true: list[int], y_pred: list[int], probs: np.ndarray,
                           classes: list[str]) -> dict[str, Any]:
    """accuracy, balanced_accuracy, macro_f1, per_class {precision, recall, f1, support}, confusion, ece."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
    )

    labels = list(range(len(classes)))
    report = classification_report(y_true, y_pred, labels=labels, target_names=list(classes),
                                   output_dict=True, zero_division=0)
    per_class = {c: {"precision": float(report[c]["precision"]), "recall": float(report[c]["recall"]),
                     "f1": float(report[c]["f1-score"]), "support": int(report[c]["support"])}
                 for c in classes}
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # Balanced accuracy over the classes present in y_true (sklearn warns when a class is absent).
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "ece": expected_calibration_error(probs, y_true),
        "classes": list(classes),
    }


def wilson_interval(successes: float, n: float, level: float = 0.95) -> list[float]:
    """Wilson score interval [low, high] for a proportion successes / n (n may be an effective, non-integer size)."""
    from scipy import stats

    if n <= 0:
        return [0.0, 1.0]
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def accuracy_by_cell_size(correct: list[bool] | np.ndarray, area: list[float] | np.ndarray,
                          edges: tuple[float, ...] = CELL_SIZE_EDGES, level: float = 0.95) -> list[dict[str, Any]]:
    """Accuracy per bin of cell area (fraction of the frame): [{area_from, area_to, n, accuracy, ci}].

    The last bin includes its upper edge; empty bins are left out. `ci` is the Wilson `level` interval.
    """
    correct, area = np.asarray(correct, dtype=bool), np.asarray(area, dtype=np.float64)
    if correct.shape != area.shape:
        raise ValueError(f"{len(correct)} outcomes but {len(area)} cell areas")
    out = []
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        sel = (area >= lo) & ((area <= hi) if last else (area < hi))
        n, k = int(sel.sum()), int(correct[sel].sum())
        if n:
            out.append({"area_from": lo, "area_to": hi, "n": n, "accuracy": k / n,
                        "ci": wilson_interval(k, n, level)})
    return out


def mask_iou(pred: np.ndarray, true: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two boolean masks of the same shape."""
    if pred.shape != true.shape:
        raise ValueError(f"mask shapes differ: predicted {pred.shape}, true {true.shape}")
    return int((pred & true).sum()), int((pred | true).sum())


def write_confusion_png(confusion: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    """Confusion matrix (rows = true, columns = predicted) as a PNG with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=110)
    ConfusionMatrixDisplay(np.asarray(confusion), display_labels=classes).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

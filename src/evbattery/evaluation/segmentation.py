"""Evaluate the segmenter on a split through Segmenter.predict_masks (the path the API and the bias suite use
to cut out photos sent without a mask): masks are predicted at the model's input size, resized back to
each photo and compared with the true masks at the photo's own resolution.

    r = evaluate_segmenter(Segmenter.from_checkpoint("model/segmenter.pth"), DatasetLayout("data/processed"))
    r["iou"]  # pooled IoU of the cell class over the split; r["per_image"] has the distribution
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evbattery.core.imageio import load_mask, load_rgb
from evbattery.core.metrics import mask_iou
from evbattery.data.layout import DatasetError, DatasetLayout
from evbattery.inference.segmenter import Segmenter

CHUNK = 32  # photos decoded at a time
WORST = 20  # lowest-IoU photos listed by name


def evaluate_segmenter(seg: Segmenter, layout: DatasetLayout, split: str = "test") -> dict[str, Any]:
    """Pooled IoU, per-image IoU quantiles, pixel accuracy and the worst photos of a split."""
    samples = layout.require_split(split)
    missing = [str(s.mask) for s in samples if not s.mask.is_file()]
    if missing:
        raise DatasetError(f"split {split!r}: {len(missing)} images have no mask, e.g. {missing[0]}")
    inter = union = correct = pixels = 0
    rows: list[tuple[float, str]] = []
    for i in range(0, len(samples), CHUNK):
        chunk = samples[i:i + CHUNK]
        for s, pred in zip(chunk, seg.predict_masks([load_rgb(s.image) for s in chunk]), strict=True):
            true = load_mask(s.mask) > 127
            try:
                a, b = mask_iou(pred > 0, true)
            except ValueError as e:
                raise DatasetError(f"{s.mask}: {e}") from e
            inter, union = inter + a, union + b
            correct += int(((pred > 0) == true).sum())
            pixels += true.size
            rows.append((a / b if b else 1.0, str(s.image)))
    per = np.array([r[0] for r in rows])
    q = {f"p{int(k * 100):02d}": float(np.quantile(per, k)) for k in (0.1, 0.25, 0.5)}
    return {"model": "segmenter", "arch": seg.meta.get("arch"), "image_size": seg.image_size, "split": split,
            "checkpoint": seg.source, "backend": seg.backend, "dataset_fingerprint": layout.fingerprint(),
            "n": len(rows),
            "iou": inter / union if union else 1.0, "pixel_accuracy": correct / pixels,
            "per_image": {"mean": float(per.mean()), **q, "min": float(per.min()),
                          "share_below_0.5": float((per < 0.5).mean())},
            "worst": [{"file": f, "iou": v} for v, f in sorted(rows)[:WORST]]}

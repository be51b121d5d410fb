"""Which (class x background family) groups of a split are hard to see, and does a model's group accuracy follow?

For every photo of the split this measures, from the photo and its true mask alone:

- contrast: how far the cell's colour stands from the background right around it (the RGB distance
  between the mean of the cell's pixels and the mean of a ring of `--ring` px outside its mask,
  0-255 scale; two cells or an occluder change little, since both means are over many pixels);
- edge: the mean gradient magnitude on the mask's boundary pixels (how sharp the outline is);
- and from the dataset card: the cell's area share of the frame, its occluded share, the cell count.

Per group it prints their means, and with `--bias-report reports/bias/report.json` it adds each model's
accuracy on that group (Original; Mixed-Rand regrouped by the donor background's family and by the
family of the photo the cell was cut from) and
Spearman's correlation of group accuracy with group contrast across the 27 groups: a strong positive
correlation says the low groups are the pairings in which the cell is hard to tell from its background
(camouflage), not backgrounds the model prefers.

    python scripts/group_difficulty.py --data data/b09 --split test --bias-report reports/bias/report.json

Results also go to reports/group_difficulty.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage, stats
from tqdm import tqdm

from evbattery.core.imageio import load_mask, load_rgb
from evbattery.core.io import write_json_report
from evbattery.data.layout import DatasetLayout


def photo_contrast(image: np.ndarray, mask: np.ndarray, ring: int) -> tuple[float, float]:
    """(contrast, edge) of one photo: cell-vs-ring mean RGB distance, mean gradient on the mask boundary."""
    cell = mask >= 128
    if not cell.any():
        return float("nan"), float("nan")
    around = ndimage.binary_dilation(cell, iterations=ring) & ~cell
    img = image.astype(np.float32)
    contrast = float(np.linalg.norm(img[cell].mean(0) - img[around].mean(0))) if around.any() else float("nan")
    grey = img.mean(2)
    grad = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)) / 8.0  # Sobel's weights sum to 8
    boundary = cell & ~ndimage.binary_erosion(cell)
    return contrast, float(grad[boundary].mean())


def measure(data: Path, split: str, ring: int) -> dict[str, dict]:
    """{group: {n, contrast, edge, area_pct, occluded_pct, two_cells_pct}} over the split's photos."""
    layout = DatasetLayout(data)
    card = json.loads((layout.root / "dataset.json").read_text())["images"]
    rows: dict[str, list[tuple[float, ...]]] = {}
    for smp in tqdm(layout.require_split(split), desc=f"{split} photos", unit="img", mininterval=2):
        meta = card.get(smp.key)
        if meta is None or not meta.get("background"):
            raise SystemExit(f"{smp.key}: the dataset card records no background family for this photo")
        c, e = photo_contrast(load_rgb(smp.image), load_mask(smp.mask), ring)
        rows.setdefault(f"{smp.cls}/{meta['background']}", []).append(
            (c, e, 100 * meta.get("area_fraction", np.nan), 100 * meta.get("occluded_fraction", 0.0),
             100.0 * (meta.get("n_cells", 1) > 1)))
    out = {}
    for g in sorted(rows):
        a = np.asarray(rows[g], dtype=np.float64)
        m = np.nanmean(a, 0)
        out[g] = {"n": len(a), "contrast": round(m[0], 2), "edge": round(m[1], 2), "area_pct": round(m[2], 2),
                  "occluded_pct": round(m[3], 2), "two_cells_pct": round(m[4], 1)}
    return out


def with_accuracy(groups: dict[str, dict], report: Path) -> dict[str, dict]:
    """Each model's group accuracies (Original; Mixed-Rand by donor family) and their Spearman rho with contrast."""
    evals = json.loads(report.read_text())["evaluations"]
    names = sorted(groups)
    contrast = [groups[g]["contrast"] for g in names]
    out = {}
    for label, ev in evals.items():
        entry = {}
        for key in ("original", "mixed_rand_by_donor", "mixed_rand_by_cell"):
            per = ev.get("groups") if key == "original" else (ev.get(key) or {}).get("groups")
            if not per or set(per) != set(names):
                continue
            acc = [per[g]["accuracy"] for g in names]
            rho, p = stats.spearmanr(contrast, acc)
            entry[key] = {"accuracy": dict(zip(names, acc, strict=True)), "spearman_contrast": round(float(rho), 3),
                          "p": float(p)}
        if entry:
            out[label] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--ring", type=int, default=6, help="width in px of the background ring around the mask")
    ap.add_argument("--bias-report", type=Path, default=None, help="a bias suite report.json on the same split")
    args = ap.parse_args()
    groups = measure(args.data, args.split, args.ring)
    result = {"data": str(args.data), "split": args.split, "ring_px": args.ring, "groups": groups}
    if args.bias_report:
        result["models"] = with_accuracy(groups, args.bias_report)
    names = sorted(groups, key=lambda g: groups[g]["contrast"])
    models = result.get("models", {})
    cols = [(m, k) for m in models for k in ("original", "mixed_rand_by_donor", "mixed_rand_by_cell") if k in models[m]]
    print(" | ".join(["group", "n", "contrast", "edge", "area %", "occl %", "2 cells %"] + [f"{m} {k}" for m, k in cols]))
    for g in names:
        v = groups[g]
        cells = [g, v["n"], v["contrast"], v["edge"], v["area_pct"], v["occluded_pct"], v["two_cells_pct"]]
        cells += [round(100 * models[m][k]["accuracy"][g], 1) for m, k in cols]
        print(" | ".join(str(c) for c in cells))
    for m, e in models.items():
        print(m, {k: (e[k]["spearman_contrast"], f"p={e[k]['p']:.2g}") for k in e})
    print("->", write_json_report("group_difficulty", result))


if __name__ == "__main__":
    main()

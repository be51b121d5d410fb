"""Which IoU can a segmenter reach at a given input size? The output-stride ceiling, for issue 4's question.

LR-ASPP predicts on a grid of 1/8 (low-level branch) and 1/16 (high-level branch) of its input and
upsamples the logits bilinearly. This estimates the ceiling that sets: the true mask area-averaged to
the grid, upsampled bilinearly and thresholded at 0.5 (an estimate, not a proof: a network could place
sharper values on the grid), against the validation masks at the training size (nearest-resized, as
training scores IoU), for strides 4, 8 and 16:

    python scripts/segmenter_iou_ceiling.py data/processed --sizes 128,224,256

Measured on 450 synthetic validation masks (generator 1.1, 256 px photos): stride-8 ceiling 0.904 at
128 px (stride 16: 0.716), 0.950 at 224 px (0.885), 0.959 at 256 px (0.905). A segmenter trained at
128 px cannot reach IoU 0.90; at 224 px it can.
Results also go to reports/segmenter_iou_ceiling_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from evbattery.core.imageio import load_mask
from evbattery.core.io import write_json_report
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import resize_mask


def ceilings(layout: DatasetLayout, split: str, size: int, strides: tuple[int, ...] = (4, 8, 16)) -> dict[int, float]:
    """IoU of the best stride-s prediction (area-average down, bilinear up, > 0.5) over the whole split."""
    masks = torch.stack([resize_mask(load_mask(s.mask), size) > 127
                         for s in tqdm(layout.require_split(split), desc=f"masks {size}px", unit="mask", leave=False)])
    truth = masks[:, None]
    out = {}
    for stride in strides:
        low = F.avg_pool2d(truth.float(), stride, ceil_mode=True)
        best = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False) > 0.5
        out[stride] = round(float((best & truth).sum() / (best | truth).sum()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="Dataset root (data/processed layout, see the README).")
    ap.add_argument("--split", default="val")
    ap.add_argument("--sizes", default="128,224,256", help="Comma-separated input sizes.")
    args = ap.parse_args()
    layout = DatasetLayout(args.data)
    result = {"dataset": str(args.data), "split": args.split,
              "iou_ceiling": {int(s): ceilings(layout, args.split, int(s)) for s in args.sizes.split(",")}}
    path = write_json_report(f"segmenter_iou_ceiling_{args.data.name}", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""A tiny RecyBat24-like release built by the tests: nested folders of small JPEGs, one COCO file per
split with polygons, one uncompressed RLE, one compressed RLE, one crowd annotation and augmented copies.

`build_recybat(root)` returns a manifest with what an import must produce (classes, groups, masks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from evbattery.core.imageio import save_jpeg

W, H = 40, 32  # not square, so a swapped width/height shows
COCO_NAME = "instance_segmentation_annotations.json"
CATEGORIES = [{"id": 1, "name": "cylindrical"}, {"id": 2, "name": "pouch"}, {"id": 3, "name": "prismatic"}]

# official split -> (sub-folder, file name); augmented copies share the part up to the class code.
FILES = {
    "train": [
        ("batch1", "1_1_1_cyl.jpg"), ("batch1/aug", "1_1_1_cyl_rotated_15_bright_0.5.jpg"),
        ("batch2", "1_2_1_po.jpg"), ("batch2", "1_1_R_2_pri.jpg"), ("batch2/aug", "1_1_R_2_pri_flip.jpg"),
    ],
    "val": [
        (sub, f"{stem}{suffix}.jpg")
        for stem, sub in (("2_1_1_cyl", "a"), ("2_1_2_cyl", "a"), ("2_3_Cyl", "b/c"),
                          ("2_2_1_po", "a"), ("2_2_2_po", "b"), ("2_2_3_po", "b/c"),
                          ("2_1_R_1_PRI", "a"), ("2_1_R_2_pri", "b"), ("2_1_R_3_pri", "b/c"))
        for suffix in ("", "_rotated_15_bright_0.5")
    ],
}
CLASS_OF = {"cyl": "cylindrical", "po": "pouch", "pri": "prismatic"}


@dataclass
class Manifest:
    """What the fixture contains: per file name its class, group, official split and expected mask."""

    root: Path
    cls: dict[str, str] = field(default_factory=dict)
    group: dict[str, str] = field(default_factory=dict)
    official: dict[str, str] = field(default_factory=dict)
    mask: dict[str, np.ndarray] = field(default_factory=dict)
    crowd: dict[str, np.ndarray] = field(default_factory=dict)
    polygons: dict[str, list[list[float]]] = field(default_factory=dict)


def _polygon(rng: np.random.Generator) -> list[float]:
    """A random convex-ish pentagon inside the frame."""
    cx, cy = rng.uniform(13, W - 13), rng.uniform(12, H - 12)
    ang = np.arange(5) * 2 * np.pi / 5 + rng.uniform(0, 2 * np.pi) + rng.uniform(-0.3, 0.3, 5)
    r = rng.uniform(8, 11, 5)
    return [round(float(v), 2) for a, rr in zip(ang, r, strict=True)
            for v in (cx + rr * np.cos(a), cy + rr * np.sin(a))]


def _decode(seg: object) -> np.ndarray:
    """Reference rasterisation of one segmentation, each piece decoded on its own."""
    if isinstance(seg, list):
        return np.any([mask_utils.decode(mask_utils.frPyObjects([p], H, W)[0]) for p in seg], axis=0)
    rle = mask_utils.frPyObjects(seg, H, W) if isinstance(seg["counts"], list) else seg
    return mask_utils.decode(rle) > 0


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    return m


def _uncompressed_rle(m: np.ndarray) -> dict:
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def build_recybat(root: Path, seed: int = 0) -> Manifest:
    """Write <root>/RecyBat24/{train,val}/... and return its manifest; the release root is manifest.root."""
    rng = np.random.default_rng(seed)
    rel = root / "RecyBat24"
    man = Manifest(rel)
    ann_id = 1
    for official, files in FILES.items():
        images, anns = [], []
        for img_id, (sub, name) in enumerate(files, start=1):
            stem = name[:-4]
            tokens = stem.split("_")
            k = next(i for i, t in enumerate(tokens) if t.lower() in CLASS_OF)
            cls, group = CLASS_OF[tokens[k].lower()], "_".join(tokens[: k + 1])
            pixels = (rng.normal(128, 40, (H, W, 3))).clip(0, 255).astype(np.uint8)
            save_jpeg(pixels, rel / official / sub / name, quality=90)
            # file_name as a relative path in train (resolved from the JSON's folder), basename in val
            images.append({"id": img_id, "file_name": f"{sub}/{name}" if official == "train" else name,
                           "width": W, "height": H})
            segs: list[object] = [[_polygon(rng)]]
            if img_id == 1:  # two instances -> union
                segs.append([_polygon(rng)])
            if official == "val" and img_id == 1:  # fixed, away from the crowd region below
                segs = [[[20.0, 10.0, 35.0, 12.0, 30.0, 28.0, 18.0, 25.0]]]
            if official == "val" and img_id == 2:
                segs = [_uncompressed_rle(_rect(3, 4, 15, 20))]
            if official == "val" and img_id == 3:
                enc = mask_utils.encode(_rect(20, 5, 33, 28))
                segs = [{"size": enc["size"], "counts": enc["counts"].decode("ascii")}]
            expected = np.any([_decode(s) for s in segs], axis=0)
            for s in segs:
                anns.append({"id": ann_id, "image_id": img_id, "category_id": 1, "iscrowd": 0, "segmentation": s})
                ann_id += 1
            if official == "val" and img_id == 1:  # a crowd region that must stay out of the mask
                crowd = _rect(0, 0, 6, 6)
                enc = mask_utils.encode(crowd)
                anns.append({"id": ann_id, "image_id": img_id, "category_id": 1, "iscrowd": 1,
                             "segmentation": {"size": enc["size"], "counts": enc["counts"].decode("ascii")}})
                ann_id += 1
                man.crowd[stem] = crowd > 0
            man.cls[stem], man.group[stem], man.official[stem] = cls, group, official
            man.mask[stem] = expected.astype(np.uint8) * 255
            man.polygons[stem] = [p for s in segs if isinstance(s, list) for p in s]
        # a photo on disk without annotation (and without a class code): skipped, not an error
        if official == "train":
            save_jpeg(np.zeros((H, W, 3), np.uint8), rel / official / "batch1" / "notes_photo.jpg")
        coco = {"images": images, "annotations": anns, "categories": CATEGORIES}
        (rel / official / COCO_NAME).write_text(json.dumps(coco))
    return man

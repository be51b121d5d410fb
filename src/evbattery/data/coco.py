"""Reading COCO instance-segmentation files with pycocotools: polygons, RLE, iscrowd.

The mask of a photo is the union of its non-crowd instances (crowd regions are 'ignore' areas in
COCO, not cells). Files are validated first so a broken export gives one message naming the file.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from evbattery.data.layout import DatasetError


class CocoError(DatasetError):
    """A COCO file is unreadable or inconsistent."""


@dataclass(frozen=True)
class CocoImage:
    """One image entry of a COCO file with its annotations."""

    id: Any
    file_name: str
    width: int | None
    height: int | None
    annotations: tuple[dict[str, Any], ...]

    @property
    def instances(self) -> list[dict[str, Any]]:
        """Non-crowd annotations that have a segmentation (the cells)."""
        return [a for a in self.annotations if not a.get("iscrowd", 0) and a.get("segmentation")]


@dataclass(frozen=True)
class CocoFile:
    """A validated COCO file: images with their annotations, and category names by id."""

    path: Path
    images: tuple[CocoImage, ...]
    categories: dict[Any, str]

    def category_names(self, image: CocoImage) -> set[str]:
        """Names of the categories of an image's non-crowd instances."""
        return {self.categories.get(a.get("category_id"), str(a.get("category_id"))) for a in image.instances}


def read_coco(path: Path) -> CocoFile:
    """Load and validate a COCO file (JSON object with 'images' and 'annotations' lists)."""
    path = Path(path)
    if not path.is_file():
        raise CocoError(f"{path}: COCO file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CocoError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(data, dict):
        raise CocoError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise CocoError(f"{path}: lacks the '{key}' list of a COCO file")
    categories = {c.get("id"): str(c.get("name")) for c in data.get("categories") or [] if isinstance(c, dict)}
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    ids = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise CocoError(f"{path}: images[{i}] lacks 'id' or 'file_name'")
        ids.add(img["id"])
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise CocoError(f"{path}: annotations[{i}] lacks 'image_id'")
        if ann["image_id"] not in ids:
            raise CocoError(f"{path}: annotations[{i}] refers to image_id {ann['image_id']!r}, "
                            "which is not in 'images'")
        by_image[ann["image_id"]].append(ann)
    images = tuple(
        CocoImage(img["id"], str(img["file_name"]), _int_or_none(img.get("width")),
                  _int_or_none(img.get("height")), tuple(by_image[img["id"]]))
        for img in data["images"]
    )
    return CocoFile(path, images, categories)


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and v > 0 else None


def _to_rle(segmentation: Any, h: int, w: int) -> Any:
    """One annotation's segmentation as an RLE (as pycocotools' COCO.annToRLE does)."""
    if isinstance(segmentation, list):  # polygons; drop degenerate ones (< 3 points)
        polys = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, h, w)  # uncompressed RLE
    if isinstance(segmentation, dict) and "counts" in segmentation:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        return rle
    raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")


def union_mask(image: CocoImage, height: int, width: int, where: Path | str = "") -> np.ndarray:
    """HxW uint8 mask (0/255): the union of the image's non-crowd instances."""
    if image.height and image.width and (image.height, image.width) != (height, width):
        raise CocoError(f"{where}: COCO says {image.file_name} is {image.width}x{image.height} but the file is "
                        f"{width}x{height}")
    rles = []
    for ann in image.instances:
        try:
            rle = _to_rle(ann["segmentation"], height, width)
        except Exception as e:  # pycocotools raises bare Exceptions on malformed input
            raise CocoError(f"{where}: annotation {ann.get('id')!r} of {image.file_name}: bad segmentation "
                            f"({e})") from e
        if rle is not None:
            if tuple(rle.get("size", (height, width))) != (height, width):
                raise CocoError(f"{where}: annotation {ann.get('id')!r} of {image.file_name}: RLE size "
                                f"{rle.get('size')} differs from the image {height}x{width}")
            rles.append(rle)
    if not rles:
        return np.zeros((height, width), np.uint8)
    with contextlib.redirect_stdout(io.StringIO()):
        merged = mask_utils.merge(rles, intersect=0)
    return (mask_utils.decode(merged) > 0).astype(np.uint8) * 255


def locate(coco: CocoFile, image: CocoImage, roots: list[Path], by_name: dict[str, list[Path]]) -> Path:
    """Find an image file: <root>/<file_name> for each root, else a unique file of that base name."""
    for root in roots:
        p = root / image.file_name
        if p.is_file():
            return p
    hits = by_name.get(Path(image.file_name).name, [])
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CocoError(f"{coco.path}: image {image.file_name!r} is ambiguous: "
                        + ", ".join(str(h) for h in hits[:3]))
    raise CocoError(f"{coco.path}: annotated image {image.file_name!r} is absent (looked in "
                    + ", ".join(str(r) for r in roots) + ")")

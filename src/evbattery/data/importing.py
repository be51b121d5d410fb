"""What every importer shares: class-name normalisation, source grouping, the seeded group split,
and writing one (image, mask, cutout) triple into the folder contract."""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evbattery.core.config import CLASSES
from evbattery.core.imageio import ImageDecodeError, load_rgb, readable_suffixes, save_png
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import IMAGE_EXTS, DatasetError, DatasetLayout

# The one table of accepted spellings (compared lower-case, after stripping spaces, '-' and '_').
# RecyBat24's file-name codes (cyl / po / pri) are here too.
CLASS_ALIASES: dict[str, str] = {
    **dict.fromkeys(("cyl", "cylinder", "cylinders", "cylindrical", "cylindric", "round", "18650",
                     "21700", "cylindricalcell", "cylindricalbattery"), "cylindrical"),
    **dict.fromkeys(("po", "pouch", "pouches", "pouchcell", "pouchbattery", "lipo", "polymer"), "pouch"),
    **dict.fromkeys(("pri", "pris", "prism", "prismatic", "prismatics", "prismaticcell",
                     "prismaticbattery"), "prismatic"),
}
# RecyBat24 file names carry the class as one of these '_'-separated tokens.
RECYBAT_CODES: dict[str, str] = {"cyl": "cylindrical", "po": "pouch", "pri": "prismatic"}
# Roboflow renames exports to '<stem>_<ext>.rf.<hash>'; the part before is the source photo.
_ROBOFLOW = re.compile(r"(?:_(?:jpe?g|png))?\.rf\.[0-9a-f]+$", re.IGNORECASE)


def normalise_class(name: str) -> str | None:
    """Map a class spelling ('cyl', 'Cylinder', 'pouch-cell'...) to a class name, or None."""
    key = re.sub(r"[\s_\-]+", "", name.strip().lower())
    return CLASS_ALIASES.get(key)


def recybat_class(stem: str) -> tuple[str, str] | None:
    """(class, source stem) from a RecyBat24 file stem: the source is everything up to the class code.

    '1_1_1_cyl_rotated_15_bright_0.5' -> ('cylindrical', '1_1_1_cyl'); None when no code is present.
    """
    tokens = stem.split("_")
    for i, tok in enumerate(tokens[1:], start=1):  # RecyBat24 names start with numbers; 'cyl_3' is not one
        cls = RECYBAT_CODES.get(tok.lower())
        if cls is not None:
            return cls, "_".join(tokens[: i + 1])
    return None


def class_from_filename(stem: str) -> str | None:
    """The one class named by the file stem's tokens (RecyBat24 codes or any alias), else None."""
    hit = recybat_class(stem)
    if hit:
        return hit[0]
    found = {normalise_class(t) for t in re.split(r"[\s_\-.]+", stem)} - {None}
    return found.pop() if len(found) == 1 else None


def source_group(stem: str) -> str:
    """The source photo a file comes from, so augmented copies stay in one split.

    RecyBat24 names -> up to the class code; Roboflow '<x>_jpg.rf.<hash>' -> '<x>'; else the stem.
    """
    hit = recybat_class(stem)
    if hit:
        return hit[1]
    return _ROBOFLOW.sub("", stem)


def group_split(groups: Mapping[str, str], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Assign each group (group -> class) to a split, per class, seeded; returns group -> split.

    `fractions` maps split names to shares; the first split takes what the others leave, so every
    class keeps at least one group there. Groups never straddle splits (no leakage of a source photo).
    """
    rng = np.random.default_rng(seed)
    names = list(fractions)
    by_class: dict[str, list[str]] = defaultdict(list)
    for g, cls in sorted(groups.items()):
        by_class[cls].append(g)
    out: dict[str, str] = {}
    for cls in sorted(by_class):
        gs = [by_class[cls][i] for i in rng.permutation(len(by_class[cls]))]
        start = 0
        for name in names[1:]:
            n = round(len(gs) * fractions[name])
            n = min(n, len(gs) - start - 1)  # leave at least one group for the first split
            for g in gs[start:start + max(n, 0)]:
                out[g] = name
            start += max(n, 0)
        for g in gs[start:]:
            out[g] = names[0]
    return out


def find_images(folder: Path) -> list[Path]:
    """Every image file under a folder (any depth), sorted, hidden files skipped."""
    suffixes = readable_suffixes()
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


@dataclass
class Writer:
    """Writes samples into a staged dataset folder and collects the card's per-image metadata."""

    layout: DatasetLayout
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, Path] = field(default_factory=dict)

    def add(self, split: str, cls: str, src: Path, mask: np.ndarray | Callable[[int, int], np.ndarray],
            meta: dict[str, Any]) -> None:
        """Copy the image bytes unchanged (name and case kept), write its mask and cutout.

        `mask` is an HxW 0/255 array, or a function (height, width) -> array when it is drawn to size.
        """
        if cls not in CLASSES:
            raise DatasetError(f"{src}: unknown class {cls!r}")
        stem = src.stem
        key = f"{split}/{cls}/{stem}"
        if key in self.origins:
            raise DatasetError(f"{src}: same file name as {self.origins[key]} in {split}/{cls}; "
                               "rename one of them")
        try:
            image = load_rgb(src)
        except ImageDecodeError as e:
            raise DatasetError(str(e)) from e
        if callable(mask):
            mask = mask(*image.shape[:2])
        if image.shape[:2] != mask.shape[:2]:
            raise DatasetError(f"{src}: image is {image.shape[1]}x{image.shape[0]} but its mask is "
                               f"{mask.shape[1]}x{mask.shape[0]}")
        if src.suffix.lower() in IMAGE_EXTS:  # the dataset's own formats travel byte for byte
            dst = self.layout.image_path(split, cls, stem, src.suffix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        else:  # WebP, AVIF, TIFF, BMP, ...: decoded once and stored losslessly as PNG
            save_png(image, self.layout.image_path(split, cls, stem, ".png"))
        save_png(mask, self.layout.mask_path(split, cls, stem))
        save_png(make_cutout(image, mask), self.layout.cutout_path(split, cls, stem))
        self.origins[key] = src
        self.images[key] = {"class": cls, **meta}

    def finish(self, source: dict[str, Any]) -> dict[str, dict[str, int]]:
        """Write the dataset card; returns counts per split and class."""
        self.layout.write_card({"source": source, "images": self.images})
        return self.layout.counts()


def counts_rows(counts: Mapping[str, Mapping[str, int]], classes: Iterable[str] = CLASSES) -> list[list[Any]]:
    """Rows of a split x class table with totals (for console.table)."""
    classes = list(classes)
    rows = [[s, *(counts[s].get(c, 0) for c in classes), sum(counts[s].values())] for s in counts]
    rows.append(["total", *(sum(counts[s].get(c, 0) for s in counts) for c in classes),
                 sum(sum(v.values()) for v in counts.values())])
    return rows

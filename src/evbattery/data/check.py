"""`evbattery data check`: find and name every broken file of a dataset, and count it.

Problems found: unreadable image, missing / unreadable mask, mask of another size than its image,
empty mask, missing cutout, mask without image, unknown class folder, malformed card, and the same
image bytes in two splits (leakage, by SHA-256 of the file).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evbattery.core.config import KINDS, SPLITS
from evbattery.core.imageio import ImageDecodeError, load_mask, load_rgb
from evbattery.data.layout import DatasetError, DatasetLayout


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with the file it concerns."""

    kind: str
    path: str
    detail: str


@dataclass
class CheckResult:
    """All problems and the image count per split and class."""

    root: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for reports/data_check.json)."""
        by_kind: dict[str, int] = defaultdict(int)
        for p in self.problems:
            by_kind[p.kind] += 1
        return {"root": self.root, "ok": self.ok, "problem_counts": dict(by_kind),
                "problems": [asdict(p) for p in self.problems], "counts": self.counts}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_dataset(root: Path, progress: bool = True) -> CheckResult:
    """Check a dataset folder against the contract; never raises for a broken file, records it."""
    layout = DatasetLayout(Path(root))
    res = CheckResult(str(root))
    add = res.problems.append
    if not layout.root.is_dir():
        add(Problem("missing_dataset", str(root), "dataset folder does not exist"))
        return res
    try:
        layout.read_card()
    except DatasetError as e:
        add(Problem("bad_card", str(layout.card_path), str(e)))
    for split in SPLITS:
        for kind in KINDS:
            for d in layout.class_dirs(split, kind):
                if d.name not in layout.classes:
                    add(Problem("unknown_class_folder", str(d),
                                f"not one of {', '.join(layout.classes)}; its files are ignored"))
    samples = [s for split in SPLITS for s in layout.samples(split)]
    if not samples:
        add(Problem("no_images", str(root), "no images under <split>/images/<class>/"))
    hashes: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for s in tqdm(samples, desc="check", unit="img", disable=not progress):
        hashes[_sha256(s.image)].append((s.split, s.image))
        try:
            image = load_rgb(s.image)
        except ImageDecodeError as e:
            add(Problem("unreadable_image", str(s.image), str(e)))
            image = None
        if not s.mask.is_file():
            add(Problem("missing_mask", str(s.image), f"no mask at {s.mask}"))
        else:
            try:
                mask = load_mask(s.mask)
            except ImageDecodeError as e:
                add(Problem("unreadable_mask", str(s.mask), str(e)))
                mask = None
            if mask is not None and image is not None and mask.shape != image.shape[:2]:
                add(Problem("mask_size_mismatch", str(s.mask), f"mask is {mask.shape[1]}x{mask.shape[0]}, "
                            f"image is {image.shape[1]}x{image.shape[0]}"))
            if mask is not None and not np.any(mask):
                add(Problem("empty_mask", str(s.mask), "mask has no cell pixels"))
        if not s.cutout.is_file():
            add(Problem("missing_cutout", str(s.image), f"no cutout at {s.cutout} (run `evbattery data cutouts`)"))
    stems = {(s.split, s.cls, s.stem) for s in samples}
    for split in SPLITS:
        for cls in layout.classes:
            d = layout.dir(split, "masks", cls)
            for m in sorted(d.glob("*.png")) if d.is_dir() else []:
                if (split, cls, m.stem) not in stems:
                    add(Problem("orphan_mask", str(m), "mask without an image"))
    for files in hashes.values():
        if len({split for split, _ in files}) > 1:
            add(Problem("duplicate_across_splits", str(files[0][1]),
                        "same bytes as " + ", ".join(str(p) for _, p in files[1:])))
    res.counts = layout.counts()
    return res

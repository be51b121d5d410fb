"""The dataset folder contract — the only place that knows where dataset files live.

    <root>/<split>/<kind>/<class>/<stem>.<ext>     kinds: images (jpg/png), masks (png), cutouts (png)
    <root>/dataset.json                            the dataset card

Everything else asks a `DatasetLayout` for paths; no path strings are assembled elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evbattery.core.config import CLASSES, KINDS, SPLITS
from evbattery.core.io import atomic_write_text

IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
CARD_FILE = "dataset.json"
CARD_FORMAT = "evbattery.dataset/1"


class DatasetError(ValueError):
    """The dataset on disk breaks the contract (missing folder, unknown class, bad card...)."""


@dataclass(frozen=True)
class Sample:
    """One photo of the dataset and the paths of its mask and cutout."""

    split: str
    cls: str
    stem: str
    image: Path
    mask: Path
    cutout: Path

    @property
    def key(self) -> str:
        """Stable id used in the card's per-image metadata: '<split>/<class>/<stem>'."""
        return f"{self.split}/{self.cls}/{self.stem}"

    def path(self, kind: str) -> Path:
        """Path of this sample's file of the given kind (images / masks / cutouts)."""
        return {"images": self.image, "masks": self.mask, "cutouts": self.cutout}[kind]


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset root."""

    root: Path
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- folders -----------------------------------------------------------------------------
    def dir(self, split: str, kind: str, cls: str | None = None) -> Path:
        """<root>/<split>/<kind>[/<class>]."""
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if kind not in KINDS:
            raise DatasetError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        d = self.root / split / kind
        return d / cls if cls is not None else d

    @property
    def card_path(self) -> Path:
        """<root>/dataset.json."""
        return self.root / CARD_FILE

    # -- files -------------------------------------------------------------------------------
    def image_path(self, split: str, cls: str, stem: str, ext: str = ".jpg") -> Path:
        """Where an image of this split/class/stem is written."""
        return self.dir(split, "images", cls) / f"{stem}{ext}"

    def mask_path(self, split: str, cls: str, stem: str) -> Path:
        """Where the mask of an image is (always PNG)."""
        return self.dir(split, "masks", cls) / f"{stem}.png"

    def cutout_path(self, split: str, cls: str, stem: str) -> Path:
        """Where the cutout of an image is (always PNG)."""
        return self.dir(split, "cutouts", cls) / f"{stem}.png"

    def sample(self, split: str, cls: str, image: Path) -> Sample:
        """The Sample for an image file in this layout."""
        stem = image.stem
        return Sample(split, cls, stem, image, self.mask_path(split, cls, stem), self.cutout_path(split, cls, stem))

    def class_dirs(self, split: str, kind: str) -> list[Path]:
        """Every sub-folder of <split>/<kind>/, known class or not (for checks)."""
        d = self.dir(split, kind)
        return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def samples(self, split: str, classes: tuple[str, ...] | None = None) -> list[Sample]:
        """All images of a split (sorted by class then stem) with their mask and cutout paths."""
        out: list[Sample] = []
        for cls in classes or self.classes:
            d = self.dir(split, "images", cls)
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                    out.append(self.sample(split, cls, p))
        return out

    def splits_present(self) -> list[str]:
        """Splits that have an images folder."""
        return [s for s in SPLITS if (self.root / s / "images").is_dir()]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class."""
        return {s: {c: len(self.samples(s, (c,))) for c in self.classes} for s in SPLITS}

    # -- card --------------------------------------------------------------------------------
    def read_card(self) -> dict[str, Any]:
        """The dataset card ({} when absent); a malformed card is an error naming the file."""
        if not self.card_path.exists():
            return {}
        try:
            card = json.loads(self.card_path.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{self.card_path}: not valid JSON ({e})") from e
        if not isinstance(card, dict):
            raise DatasetError(f"{self.card_path}: expected a JSON object")
        return card

    def write_card(self, card: dict[str, Any]) -> None:
        """Write the card atomically, filling in format, classes and counts."""
        card = {"format": CARD_FORMAT, "classes": list(self.classes), **card, "counts": self.counts()}
        atomic_write_text(self.card_path, json.dumps(card, indent=1, sort_keys=True) + "\n")

    def fingerprint(self) -> str:
        """Short content hash of the dataset card (identifies the data a model was trained on)."""
        if not self.card_path.exists():
            return "no-card"
        return hashlib.sha256(self.card_path.read_bytes()).hexdigest()[:16]

    def image_meta(self, sample: Sample) -> dict[str, Any]:
        """Per-image metadata from the card (e.g. background family), {} when unknown."""
        return self.read_card().get("images", {}).get(sample.key, {})

    def require_split(self, split: str) -> list[Sample]:
        """Samples of a split, or a DatasetError saying the split is missing or empty."""
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist (generate one with `evbattery data synth`)")
        samples = self.samples(split)
        if not samples:
            raise DatasetError(f"split {split!r} of {self.root} has no images under {self.dir(split, 'images')}")
        return samples


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless overwrite; refuse an unwritable parent."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"output folder {out} is not empty; pass --overwrite to replace it")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DatasetError(f"output folder {out} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise DatasetError(f"output folder {out} cannot be created: {parent} is not writable")


@contextlib.contextmanager
def staged_output(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a dataset in a temporary sibling folder and move it to `out` only on success.

    On any exception (or Ctrl-C) the temporary folder is removed and `out` is left untouched.
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

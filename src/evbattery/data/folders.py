"""Import other datasets: any COCO export (Roboflow, CVAT...) and `<class>/<image>` folder trees.

Folder trees (`import-folders SRC`): SRC holds one folder per class (any accepted spelling, see
importing.CLASS_ALIASES), optionally under SRC/images/, or under SRC/{train,val,test}/ when already
split. Each image's mask is found, in this order, as
  1. `<class>/<stem>_mask.png` beside the image,
  2. `masks/<class>/<stem>.png` in a `masks` folder next to the class folders,
  3. the image's own alpha channel (a PNG with transparency).
Masks may be any mode; pixels >= 128 (or opaque alpha) are the cell.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evbattery.core.config import SPLITS
from evbattery.core.imageio import ImageDecodeError, decode_image_with_alpha, load_mask
from evbattery.data.coco import locate, read_coco, union_mask
from evbattery.data.importing import (
    Writer,
    class_from_filename,
    find_images,
    group_split,
    normalise_class,
    source_group,
)
from evbattery.data.layout import DatasetError, DatasetLayout, staged_output

CLASS_FROM = ("category", "filename")
MASK_SUFFIX = "_mask"


def _fractions(val_fraction: float, test_fraction: float) -> dict[str, float]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be in [0, 1) "
                           "and sum to less than 1")
    return {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}


def import_coco(images: Path, annotations: Path, out: Path, class_from: str = "category",
                val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 42,
                overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Convert a COCO export (image folder + annotation file) into the folder contract, split by source photo."""
    images, annotations = Path(images), Path(annotations)
    if class_from not in CLASS_FROM:
        raise DatasetError(f"--class-from {class_from!r}: expected one of {', '.join(CLASS_FROM)}")
    if not images.is_dir():
        raise DatasetError(f"{images}: image folder not found")
    fractions = _fractions(val_fraction, test_fraction)
    coco = read_coco(annotations)
    by_name: dict[str, list[Path]] = defaultdict(list)
    for f in find_images(images):
        by_name[f.name].append(f)
    plan = []
    for im in coco.images:
        if not im.instances:
            continue
        path = locate(coco, im, [images, annotations.parent], by_name)
        if class_from == "filename":
            cls = class_from_filename(path.stem)
            why = "its file name names no single class"
        else:
            names = coco.category_names(im)
            found = {normalise_class(n) for n in names}
            cls = found.pop() if len(found) == 1 else None
            why = f"its categories {sorted(names)} do not name exactly one known class"
        if cls is None:
            raise DatasetError(f"{path}: cannot decide the class: {why}")
        plan.append((cls, source_group(path.stem), path, im))
    if not plan:
        raise DatasetError(f"{annotations}: no image has a non-crowd segmentation")
    assign = group_split({g: c for c, g, _, _ in plan}, fractions, seed)
    with staged_output(out, overwrite) as tmp:
        writer = Writer(DatasetLayout(tmp))
        for cls, group, path, im in tqdm(plan, desc="import coco", unit="img", disable=not progress):
            writer.add(assign[group], cls, path, lambda h, w, im=im: union_mask(im, h, w, annotations),
                       {"source_group": group, "original_file": str(path.relative_to(images))})
        counts = writer.finish({"importer": "coco", "images": str(images.resolve()),
                                "annotations": str(annotations.resolve()), "class_from": class_from,
                                "seed": seed, "fractions": fractions})
    return {"counts": counts, "images": len(plan)}


def _class_root(src: Path) -> Path:
    return src / "images" if (src / "images").is_dir() else src


def _find_mask(image: Path, class_root: Path) -> Path | None:
    for cand in (image.with_name(f"{image.stem}{MASK_SUFFIX}.png"),
                 class_root.parent / "masks" / image.parent.name / f"{image.stem}.png",
                 class_root / "masks" / image.parent.name / f"{image.stem}.png"):
        if cand.is_file():
            return cand
    return None


def _plan_tree(class_root: Path) -> list[tuple[str, Path, Path | None]]:
    """(class, image, mask or None for alpha) of one `<class>/<image>` tree."""
    plan = []
    dirs = [d for d in sorted(class_root.iterdir()) if d.is_dir() and not d.name.startswith(".")
            and d.name != "masks"]
    if not dirs:
        raise DatasetError(f"{class_root}: no class folders (expected <class>/<image> folders)")
    for d in dirs:
        cls = normalise_class(d.name)
        if cls is None:
            raise DatasetError(f"{d}: cannot decide the class: folder name {d.name!r} is not a known class "
                               "(cylindrical / pouch / prismatic or an accepted spelling)")
        for img in find_images(d):
            if img.stem.endswith(MASK_SUFFIX):
                continue
            mask = _find_mask(img, class_root)
            if mask is None:
                try:
                    has_alpha = decode_image_with_alpha(img)[1] is not None
                except ImageDecodeError as e:
                    raise DatasetError(str(e)) from e
                if not has_alpha:
                    raise DatasetError(f"{img}: no mask found ({img.stem}{MASK_SUFFIX}.png beside it, "
                                       f"masks/{d.name}/{img.stem}.png, or an alpha channel)")
            plan.append((cls, img, mask))
    return plan


def _read_mask(image: Path, mask: Path | None):
    """The mask of an image: its mask file, else its alpha channel."""
    try:
        return load_mask(mask) if mask is not None else decode_image_with_alpha(image)[1]
    except ImageDecodeError as e:
        raise DatasetError(str(e)) from e


def import_folders(src: Path, out: Path, val_fraction: float = 0.15, test_fraction: float = 0.15,
                   seed: int = 42, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Convert `<class>/<image>` trees with masks (or SRC/<split>/<class>/...) into the folder contract."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: folder not found")
    presplit = [s for s in SPLITS if (src / s).is_dir()]
    items: list[tuple[str | None, str, Path, Path | None]] = []
    if presplit:
        for s in presplit:
            items += [(s, *it) for it in _plan_tree(_class_root(src / s))]
    else:
        items = [(None, *it) for it in _plan_tree(_class_root(src))]
    if not items:
        raise DatasetError(f"{src}: no images found")
    assign = group_split({source_group(p.stem): c for s, c, p, _ in items if s is None},
                         _fractions(val_fraction, test_fraction), seed)
    with staged_output(out, overwrite) as tmp:
        writer = Writer(DatasetLayout(tmp))
        for split, cls, img, mask in tqdm(items, desc="import folders", unit="img", disable=not progress):
            group = source_group(img.stem)
            writer.add(split or assign[group], cls, img, _read_mask(img, mask),
                       {"source_group": group, "original_file": str(img.relative_to(src))})
        counts = writer.finish({"importer": "folders", "path": str(src.resolve()), "seed": seed,
                                "presplit": bool(presplit)})
    return {"counts": counts, "images": len(items)}

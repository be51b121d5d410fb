"""Import the RecyBat24 release into the dataset folder contract.

The release has `train/` and `val/` folders of JPEGs (possibly nested), each with one COCO file
`instance_segmentation_annotations.json`. The class is a code in the file name (`_cyl`, `_po`, `_pri`);
augmented copies extend the name (`1_1_1_cyl_rotated_15_bright_0.5.jpg`), so the part up to and
including the code names the source photo. The official val set becomes val + test by a seeded split
over source photos, so no photo (or any copy of it) is in both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evbattery.data.coco import CocoFile, CocoImage, locate, read_coco, union_mask
from evbattery.data.importing import Writer, find_images, group_split, recybat_class
from evbattery.data.layout import DatasetError, DatasetLayout, staged_output

COCO_NAME = "instance_segmentation_annotations.json"
SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation")}
VAL_TEST = {"val": 0.5, "test": 0.5}


@dataclass(frozen=True)
class _Item:
    official: str
    cls: str
    group: str
    path: Path
    image: CocoImage
    coco: CocoFile


def find_split_dir(src: Path, names: tuple[str, ...]) -> Path:
    """The shallowest folder under src (depth <= 2) called one of `names` (case-insensitive)."""
    level = [src]
    for _ in range(3):
        for d in level:
            for child in sorted(d.iterdir()):
                if child.is_dir() and child.name.lower() in names:
                    return child
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    raise DatasetError(f"{src}: no '{names[0]}/' folder found (RecyBat24 has train/ and val/ folders)")


def _plan_split(official: str, folder: Path) -> tuple[list[_Item], int]:
    """Items of one official split and how many files on disk had no annotation."""
    jsons = sorted(folder.rglob(COCO_NAME))
    if not jsons:
        raise DatasetError(f"{folder}: no {COCO_NAME} found")
    files = find_images(folder)
    by_name: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_name[f.name].append(f)
    items: list[_Item] = []
    for j in jsons:
        coco = read_coco(j)
        for im in coco.images:
            if not im.instances:
                continue  # no cell annotated: no usable mask
            path = locate(coco, im, [j.parent, folder], by_name)
            hit = recybat_class(path.stem)
            if hit is None:
                raise DatasetError(f"{path}: cannot decide the class: the file name has no _cyl, _po or _pri code")
            items.append(_Item(official, hit[0], hit[1], path, im, coco))
    used = {it.path for it in items}
    return items, sum(1 for f in files if f not in used)


def import_recybat24(src: Path, out: Path, seed: int = 42, overwrite: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Convert a RecyBat24 folder into `out` (built in a temp folder, moved into place on success)."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: RecyBat24 folder not found")
    items: list[_Item] = []
    unannotated = 0
    for official, names in SPLIT_NAMES.items():
        split_items, n = _plan_split(official, find_split_dir(src, names))
        items += split_items
        unannotated += n
    groups = {it.group: it.cls for it in items if it.official == "val"}
    # the release itself may hold one photo in both official splits; we keep its split but say so
    shared = sorted(groups.keys() & {it.group for it in items if it.official == "train"})
    assign = group_split(groups, VAL_TEST, seed)
    with staged_output(out, overwrite) as tmp:
        writer = Writer(DatasetLayout(tmp))
        for it in tqdm(items, desc="import recybat24", unit="img", disable=not progress):
            split = "train" if it.official == "train" else assign[it.group]
            writer.add(split, it.cls, it.path,
                       lambda h, w, it=it: union_mask(it.image, h, w, it.coco.path),
                       {"source_group": it.group, "official_split": it.official,
                        "original_file": str(it.path.relative_to(src))})
        counts = writer.finish({"importer": "recybat24", "path": str(src.resolve()), "seed": seed,
                                "val_test_split": "official val split 50/50 per class by source photo",
                                "unannotated_files_skipped": unannotated,
                                "source_photos_in_official_train_and_val": shared})
    return {"counts": counts, "unannotated_skipped": unannotated, "images": len(items),
            "shared_train_val_photos": shared}

"""`evbattery data import-coco` (Roboflow/CVAT-like exports) and `import-folders` (<class>/<image> trees)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import load_mask, save_jpeg, save_png
from evbattery.data.importing import normalise_class, source_group
from evbattery.data.layout import DatasetLayout

runner = CliRunner()
W, H = 36, 28
CATS = [{"id": 1, "name": "Cylinder"}, {"id": 2, "name": "pouch-cell"}, {"id": 3, "name": "Prismatic"}]
CLS = {1: "cylindrical", 2: "pouch", 3: "prismatic"}


def _rect_poly(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def build_export(root: Path, sources_per_class: int = 4, copies: int = 2) -> tuple[Path, Path, dict[str, int]]:
    """A Roboflow-like export: <root>/export/<src>_jpg.rf.<hash>.jpg + _annotations.coco.json; name -> category."""
    rng = np.random.default_rng(1)
    folder = root / "export"
    images, anns, cat_of = [], [], {}
    for cat in (1, 2, 3):
        for i in range(sources_per_class):
            for c in range(copies):
                name = f"photo{cat}{i}_jpg.rf.{cat}{i}{c}abcdef.jpg"
                save_jpeg((rng.random((H, W, 3)) * 255).astype(np.uint8), folder / name)
                img_id = len(images) + 1
                images.append({"id": img_id, "file_name": name, "width": W, "height": H})
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "iscrowd": 0,
                             "segmentation": [_rect_poly(4, 4, 14, 12)], "bbox": [4, 4, 10, 8], "area": 80})
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "iscrowd": 0,
                             "segmentation": [_rect_poly(20, 10, 30, 24)], "bbox": [20, 10, 10, 14], "area": 140})
                cat_of[name] = cat
    ann_file = folder / "_annotations.coco.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return folder, ann_file, cat_of


def test_class_names_normalised_in_one_table() -> None:
    for name in ("cyl", "cylinder", "Cylindrical", " CYLINDER "):
        assert normalise_class(name) == "cylindrical"
    assert normalise_class("pouch-cell") == normalise_class("Pouch") == "pouch"
    assert normalise_class("pri") == normalise_class("Prismatic") == "prismatic"
    assert normalise_class("screw") is None
    assert source_group("photo10_jpg.rf.101abcdef") == "photo10"
    assert source_group("1_1_1_cyl_rotated_15_bright_0.5") == "1_1_1_cyl"


def test_import_coco_by_category(tmp_path: Path) -> None:
    images, ann, cat_of = build_export(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["data", "import-coco", "--images", str(images), "--annotations", str(ann),
                              "--out", str(out), "--val-fraction", "0.25", "--test-fraction", "0.25"])
    assert res.exit_code == 0, res.output
    layout = DatasetLayout(out)
    counts = layout.counts()
    # 4 source photos per class x 2 copies: 2 photos train, 1 val, 1 test
    for cls in CLS.values():
        assert (counts["train"][cls], counts["val"][cls], counts["test"][cls]) == (4, 2, 2)
    splits_of: dict[str, set[str]] = {}
    expected = np.zeros((H, W), np.uint8)
    expected[4:12, 4:14] = 255  # pycocotools covers [x0, x1) x [y0, y1) for an integer rectangle
    expected[10:24, 20:30] = 255
    for split in ("train", "val", "test"):
        for s in layout.samples(split):
            assert s.cls == CLS[cat_of[s.image.name]]
            splits_of.setdefault(source_group(s.stem), set()).add(split)
            np.testing.assert_array_equal(load_mask(s.mask), expected)
    assert all(len(v) == 1 for v in splits_of.values())
    assert layout.read_card()["source"]["importer"] == "coco"


def test_import_coco_by_filename(tmp_path: Path) -> None:
    images, ann, _ = build_export(tmp_path, sources_per_class=2, copies=1)
    for p in sorted(images.glob("*.jpg")):  # put the class in the name, hide it from the categories
        cls = {"1": "cyl", "2": "pouch", "3": "Prismatic"}[p.name[5]]
        p.rename(p.with_name(f"{cls}_{p.name}"))
    data = json.loads(ann.read_text())
    for im in data["images"]:
        cls = {"1": "cyl", "2": "pouch", "3": "Prismatic"}[im["file_name"][5]]
        im["file_name"] = f"{cls}_{im['file_name']}"
    data["categories"] = [{"id": i, "name": "battery"} for i in (1, 2, 3)]
    ann.write_text(json.dumps(data))
    out = tmp_path / "out"
    res = runner.invoke(app, ["data", "import-coco", "--images", str(images), "--annotations", str(ann),
                              "--out", str(out), "--class-from", "filename"])
    assert res.exit_code == 0, res.output
    counts = DatasetLayout(out).counts()
    assert {c: sum(counts[s][c] for s in counts) for c in CLS.values()} == dict.fromkeys(CLS.values(), 2)
    # and by category the same files cannot be classed ('battery' is no class)
    res = runner.invoke(app, ["data", "import-coco", "--images", str(images), "--annotations", str(ann),
                              "--out", str(tmp_path / "out2")])
    assert res.exit_code != 0 and "cannot decide the class" in " ".join(res.output.split())
    assert not (tmp_path / "out2").exists()


def _fails(args: list[str], *needles: str, out: Path) -> None:
    res = runner.invoke(app, args)
    text = " ".join(res.output.split())
    assert res.exit_code != 0 and "Traceback" not in res.output
    for n in needles:
        assert n in text, text
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_import_coco_not_json(tmp_path: Path) -> None:
    images, ann, _ = build_export(tmp_path, 1, 1)
    ann.write_text("<xml/>")
    out = tmp_path / "out"
    _fails(["data", "import-coco", "--images", str(images), "--annotations", str(ann), "--out", str(out)],
           ann.name, "not a JSON file", out=out)


def test_import_coco_annotated_image_absent(tmp_path: Path) -> None:
    images, ann, cat_of = build_export(tmp_path, 1, 1)
    gone = sorted(cat_of)[1]
    (images / gone).unlink()
    out = tmp_path / "out"
    _fails(["data", "import-coco", "--images", str(images), "--annotations", str(ann), "--out", str(out)],
           gone, "absent", out=out)


def test_import_coco_missing_images_folder(tmp_path: Path) -> None:
    _, ann, _ = build_export(tmp_path, 1, 1)
    out = tmp_path / "out"
    _fails(["data", "import-coco", "--images", str(tmp_path / "nope"), "--annotations", str(ann),
            "--out", str(out)], "nope", "not found", out=out)


# -- import-folders --------------------------------------------------------------------------------------
def build_tree(root: Path) -> dict[str, np.ndarray]:
    """cyl/ with <stem>_mask.png beside, Pouch/ with masks/Pouch/<stem>.png, prismatic/ with RGBA PNGs."""
    rng = np.random.default_rng(2)
    masks = {}
    for folder, n in (("cyl", 3), ("Pouch", 3), ("prismatic", 3)):
        for i in range(n):
            stem = f"{folder}_{i}"
            img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
            m = np.zeros((H, W), np.uint8)
            m[3 + i:15 + i, 5:20 + i] = 255
            masks[stem] = m
            if folder == "cyl":
                save_jpeg(img, root / folder / f"{stem}.jpg")
                save_png(m, root / folder / f"{stem}_mask.png")
            elif folder == "Pouch":
                save_jpeg(img, root / folder / f"{stem}.jpg")
                save_png(m, root / "masks" / folder / f"{stem}.png")
            else:
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.dstack([img, m])).save(root / folder / f"{stem}.png")
    return masks


def test_import_folders(tmp_path: Path) -> None:
    masks = build_tree(tmp_path / "src")
    out = tmp_path / "out"
    res = runner.invoke(app, ["data", "import-folders", str(tmp_path / "src"), "--out", str(out),
                              "--val-fraction", "0.34", "--test-fraction", "0.34"])
    assert res.exit_code == 0, res.output
    layout = DatasetLayout(out)
    counts = layout.counts()
    assert all(counts[s][c] == 1 for s in counts for c in CLS.values()), counts
    seen = set()
    for split in ("train", "val", "test"):
        for s in layout.samples(split):
            np.testing.assert_array_equal(load_mask(s.mask), masks[s.stem])
            seen.add(s.stem)
    assert seen == set(masks)  # '<stem>_mask.png' files are masks, not images


def test_import_folders_missing_mask(tmp_path: Path) -> None:
    build_tree(tmp_path / "src")
    (tmp_path / "src" / "cyl" / "cyl_1_mask.png").unlink()
    out = tmp_path / "out"
    _fails(["data", "import-folders", str(tmp_path / "src"), "--out", str(out)], "cyl_1.jpg", "no mask found",
           out=out)


def test_import_folders_unknown_class(tmp_path: Path) -> None:
    build_tree(tmp_path / "src")
    (tmp_path / "src" / "screws").mkdir()
    out = tmp_path / "out"
    _fails(["data", "import-folders", str(tmp_path / "src"), "--out", str(out)], "screws",
           "cannot decide the class", out=out)


def test_import_folders_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fails(["data", "import-folders", str(tmp_path / "nope"), "--out", str(out)], "nope", "not found", out=out)


@pytest.mark.parametrize("bad", [["--val-fraction", "0.6", "--test-fraction", "0.5"]])
def test_import_folders_bad_fractions(tmp_path: Path, bad: list[str]) -> None:
    build_tree(tmp_path / "src")
    out = tmp_path / "out"
    _fails(["data", "import-folders", str(tmp_path / "src"), "--out", str(out), *bad], "--val-fraction", out=out)


def test_import_folders_presplit(tmp_path: Path) -> None:
    """SRC/<split>/<class>/<image> keeps the given splits."""
    masks = build_tree(tmp_path / "src" / "train")
    build_tree(tmp_path / "src" / "test")
    out = tmp_path / "out"
    res = runner.invoke(app, ["data", "import-folders", str(tmp_path / "src"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    counts = DatasetLayout(out).counts()
    assert counts["train"] == counts["test"] == dict.fromkeys(CLS.values(), 3)
    assert sum(counts["val"].values()) == 0 and len(masks) == 9

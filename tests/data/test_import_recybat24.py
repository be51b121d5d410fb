"""`evbattery data import-recybat24` on a RecyBat24-like fixture: masks, counts, group split, case, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from recybat_fixture import COCO_NAME, H, Manifest, W, build_recybat
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import load_mask, load_rgb
from evbattery.data.layout import DatasetLayout

runner = CliRunner()


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    """The fixture release and its import (seed 42), shared read-only by the tests of this module."""
    base = tmp_path_factory.mktemp("recybat")
    man = build_recybat(base)
    out = base / "processed"
    res = runner.invoke(app, ["data", "import-recybat24", str(man.root), "--out", str(out), "--seed", "42"])
    assert res.exit_code == 0, res.output
    return man, out


def _by_stem(out: Path) -> dict[str, tuple[str, str, Path]]:
    layout = DatasetLayout(out)
    return {s.stem: (s.split, s.cls, s.image) for split in ("train", "val", "test") for s in layout.samples(split)}


def test_masks_equal_union_of_non_crowd_instances(imported: tuple[Manifest, Path]) -> None:
    man, out = imported
    layout = DatasetLayout(out)
    samples = {s.stem: s for split in ("train", "val", "test") for s in layout.samples(split)}
    assert set(samples) == set(man.mask)
    for stem, expected in man.mask.items():
        got = load_mask(samples[stem].mask)
        assert got.shape == (H, W)
        np.testing.assert_array_equal(got, expected, err_msg=stem)
        assert got.any(), stem
    # the crowd region is not part of the mask
    (stem, crowd), = man.crowd.items()
    assert not load_mask(samples[stem].mask)[crowd].any()
    # independent check of orientation: PIL's rasterisation of the same polygon agrees (IoU > 0.8)
    for stem, polys in man.polygons.items():
        if len(polys) != 1:
            continue
        ref = Image.new("L", (W, H))
        ImageDraw.Draw(ref).polygon(list(zip(polys[0][::2], polys[0][1::2], strict=True)), fill=255)
        a, b = np.asarray(ref) > 0, load_mask(samples[stem].mask) > 0
        assert (a & b).sum() / (a | b).sum() > 0.8, stem
    # cutouts: photo inside the mask, black outside
    s = samples["2_1_1_cyl"]
    cut, img, m = load_rgb(s.cutout), load_rgb(s.image), load_mask(s.mask) > 0
    np.testing.assert_array_equal(cut[m], img[m])
    assert not cut[~m].any()


def test_counts_per_split_and_class(imported: tuple[Manifest, Path]) -> None:
    man, out = imported
    counts = DatasetLayout(out).counts()
    assert counts["train"] == {"cylindrical": 2, "pouch": 1, "prismatic": 2}
    # official val: 3 source photos x 2 copies per class, split by photo -> val 1 photo, test 2 photos
    for cls in ("cylindrical", "pouch", "prismatic"):
        assert counts["val"][cls] + counts["test"][cls] == 6
        assert counts["val"][cls] == 2 and counts["test"][cls] == 4
    card = DatasetLayout(out).read_card()
    assert card["counts"] == counts
    assert card["source"]["importer"] == "recybat24" and card["source"]["seed"] == 42
    assert card["source"]["unannotated_files_skipped"] == 1
    assert card["images"]["train/cylindrical/1_1_1_cyl_rotated_15_bright_0.5"]["source_group"] == "1_1_1_cyl"
    for stem, (split, cls, _) in _by_stem(out).items():
        assert cls == man.cls[stem]
        assert (split == "train") == (man.official[stem] == "train")


def test_no_source_photo_in_both_val_and_test(imported: tuple[Manifest, Path]) -> None:
    man, out = imported
    splits_of: dict[str, set[str]] = {}
    for stem, (split, _, _) in _by_stem(out).items():
        splits_of.setdefault(man.group[stem], set()).add(split)
    assert all(len(s) == 1 for s in splits_of.values()), splits_of
    assert {g for g, s in splits_of.items() if s == {"val"}} and {g for g, s in splits_of.items() if s == {"test"}}


def test_same_seed_same_split_other_seed_may_differ(imported: tuple[Manifest, Path], tmp_path: Path) -> None:
    man, out = imported
    again = tmp_path / "again"
    assert runner.invoke(app, ["data", "import-recybat24", str(man.root), "--out", str(again), "--seed", "42"]).exit_code == 0
    assert _by_stem(again).keys() == _by_stem(out).keys()
    assert {k: v[:2] for k, v in _by_stem(again).items()} == {k: v[:2] for k, v in _by_stem(out).items()}
    # another seed really is used: the same photos, in the same classes, split differently (still by group)
    seed42 = {k: v[0] for k, v in _by_stem(out).items()}
    differs = []
    for seed in ("1", "2", "3"):
        other = tmp_path / f"seed{seed}"
        assert runner.invoke(app, ["data", "import-recybat24", str(man.root), "--out", str(other), "--seed", seed]).exit_code == 0
        split_of = {k: v[0] for k, v in _by_stem(other).items()}
        assert split_of.keys() == seed42.keys()
        assert {k: v[1] for k, v in _by_stem(other).items()} == {k: v[1] for k, v in _by_stem(out).items()}
        groups: dict[str, set[str]] = {}
        for stem, split in split_of.items():
            groups.setdefault(man.group[stem], set()).add(split)
        assert all(len(g) == 1 for g in groups.values())
        differs.append(split_of != seed42)
    assert any(differs), "three other seeds all gave seed 42's split: --seed is not used"


def test_file_name_case_preserved(imported: tuple[Manifest, Path]) -> None:
    _, out = imported
    names = {p.name for p in out.rglob("*.jpg")}
    assert "2_3_Cyl.jpg" in names and "2_1_R_1_PRI.jpg" in names
    assert "2_3_cyl.jpg" not in names


# -- bad input: one clear message, non-zero exit, nothing written ---------------------------------------
@pytest.fixture()
def release(tmp_path: Path) -> Manifest:
    return build_recybat(tmp_path / "src")


def _fails(args: list[str], *needles: str, out: Path | None = None) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    for n in needles:
        assert n in text, text
    assert "Traceback" not in res.output
    if out is not None:
        assert not out.exists() or out.is_file()
        assert not list(out.parent.glob(f".{out.name}.tmp-*")), "a temporary folder was left behind"
    return text


def test_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fails(["data", "import-recybat24", str(tmp_path / "nope"), "--out", str(out)], "nope", "not found", out=out)


def test_missing_val_folder(release: Manifest, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(release.root / "val")
    out = tmp_path / "out"
    _fails(["data", "import-recybat24", str(release.root), "--out", str(out)], "no 'val/' folder", out=out)


def test_coco_not_json(release: Manifest, tmp_path: Path) -> None:
    (release.root / "val" / COCO_NAME).write_text("{not json")
    out = tmp_path / "out"
    _fails(["data", "import-recybat24", str(release.root), "--out", str(out)], COCO_NAME, "not a JSON file",
           out=out)


@pytest.mark.parametrize("key", ["images", "annotations"])
def test_coco_lacks_key(release: Manifest, tmp_path: Path, key: str) -> None:
    path = release.root / "train" / COCO_NAME
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    _fails(["data", "import-recybat24", str(release.root), "--out", str(out)], COCO_NAME, f"lacks the '{key}'",
           out=out)


def test_annotated_image_absent(release: Manifest, tmp_path: Path) -> None:
    (release.root / "val" / "b" / "2_2_2_po.jpg").unlink()
    out = tmp_path / "out"
    _fails(["data", "import-recybat24", str(release.root), "--out", str(out)], "2_2_2_po.jpg", "absent", out=out)


def test_undecidable_class(release: Manifest, tmp_path: Path) -> None:
    path = release.root / "val" / COCO_NAME
    data = json.loads(path.read_text())
    old = data["images"][0]["file_name"]
    data["images"][0]["file_name"] = "2_1_1_xyz.jpg"
    (release.root / "val" / "a" / old).rename(release.root / "val" / "a" / "2_1_1_xyz.jpg")
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    _fails(["data", "import-recybat24", str(release.root), "--out", str(out)], "2_1_1_xyz.jpg",
           "cannot decide the class", out=out)


def test_unwritable_output(release: Manifest, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a regular file where a folder must be created (root can write anywhere)
    _fails(["data", "import-recybat24", str(release.root), "--out", str(blocker / "out")], "a_file",
           "is a file, not a folder")
    assert blocker.read_text() == "x"


def test_non_empty_output_without_overwrite(release: Manifest, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(["data", "import-recybat24", str(release.root), "--out", str(out)], str(out), "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    res = runner.invoke(app, ["data", "import-recybat24", str(release.root), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert not (out / "keep.txt").exists() and (out / "dataset.json").is_file()

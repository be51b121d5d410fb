"""`evbattery predict` on every photo format in a folder, and its answers to bad input (issue 25).

Models are the hand-built colour readers (tests/known_models.py): no training, and every answer is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from known_models import photo, write_colour_readers
from PIL import Image
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import save_png

CLASSES = ("cylindrical", "pouch", "prismatic")
FORMATS = {".webp": {"format": "WEBP", "lossless": True}, ".avif": {"format": "AVIF", "quality": 90},
           ".bmp": {"format": "BMP"}, ".tif": {"format": "TIFF"}, ".tiff": {"format": "TIFF"}}


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_readers(tmp_path_factory.mktemp("colour_predict"))


def _invoke(args: list[str], tmp_path: Path):
    return CliRunner().invoke(app, args, env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})


def test_folder_predict_finds_and_classifies_webp_avif_bmp_tiff(colour_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    expected = {}
    for i, (ext, kw) in enumerate(FORMATS.items()):
        k = i % 3
        img, _ = photo(k, k, seed=i)
        path = folder / ("sub" if i % 2 else "") / f"cell_{i}{ext}"
        Image.fromarray(img).save(path, **kw)
        expected[str(path)] = CLASSES[k]
    (folder / "notes.txt").write_text("not a photo")  # other files are not picked up
    res = _invoke(["predict", str(folder), "--model", "images", "--format", "json", "--model-dir", str(colour_dir)],
                  tmp_path)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["file"]: r["predicted_class"] for r in rows} == expected


def test_an_empty_folder_says_which_formats_it_looked_for(colour_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = _invoke(["predict", str(tmp_path / "empty"), "--model-dir", str(colour_dir)], tmp_path)
    assert res.exit_code == 1
    assert "no images found" in res.output and ".webp" in res.output and ".tiff" in res.output


@pytest.fixture()
def two_photos(tmp_path: Path) -> tuple[Path, Path, Path]:
    img, mask = photo(0, 1)
    a, b, m = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "a_mask.png"
    save_png(img, a)
    save_png(img, b)
    save_png(mask, m)
    return a, b, m


def test_mask_with_several_files_is_refused(colour_dir: Path, two_photos, tmp_path: Path) -> None:
    a, b, m = two_photos
    res = _invoke(["predict", str(a), str(b), "--mask", str(m), "--model-dir", str(colour_dir)], tmp_path)
    assert res.exit_code == 1 and "--mask applies to one image, got 2" in res.output
    res = _invoke(["predict", str(a.parent), "--mask", str(m), "--model-dir", str(colour_dir)], tmp_path)
    assert res.exit_code == 1 and "--mask applies to one image, got 3" in res.output  # a folder counts its files


def test_bad_format_is_refused_before_loading_models(two_photos, tmp_path: Path) -> None:
    a, _, _ = two_photos
    res = _invoke(["predict", str(a), "--format", "xml", "--model-dir", str(tmp_path / "no-models")], tmp_path)
    assert res.exit_code == 1 and "--format 'xml': expected one of table, json, csv" in res.output


def test_unreadable_mask_is_named(colour_dir: Path, two_photos, tmp_path: Path) -> None:
    a, _, _ = two_photos
    bad = tmp_path / "broken_mask.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = _invoke(["predict", str(a), "--mask", str(bad), "--model", "cutouts", "--model-dir", str(colour_dir)],
                  tmp_path)
    assert res.exit_code == 1 and f"--mask {bad}" in res.output and "Traceback" not in res.output
    res = _invoke(["predict", str(a), "--mask", str(tmp_path / "missing.png"), "--model", "cutouts",
                   "--model-dir", str(colour_dir)], tmp_path)
    assert res.exit_code != 0 and "missing.png" in res.output and "Traceback" not in res.output


def test_mask_of_another_size_is_named(colour_dir: Path, two_photos, tmp_path: Path) -> None:
    a, _, _ = two_photos
    small = tmp_path / "small_mask.png"
    save_png(np.full((10, 12), 255, np.uint8), small)
    res = _invoke(["predict", str(a), "--mask", str(small), "--model", "cutouts", "--model-dir", str(colour_dir)],
                  tmp_path)
    assert res.exit_code == 1 and "mask size 12x10 differs from image size 48x48" in res.output


def test_cutout_model_without_mask_or_segmenter_says_what_it_needs(colour_dir: Path, two_photos,
                                                                   tmp_path: Path) -> None:
    a, _, _ = two_photos
    assert not (colour_dir / "segmenter.pth").exists()
    res = _invoke(["predict", str(a), "--model", "cutouts", "--model-dir", str(colour_dir)], tmp_path)
    assert res.exit_code == 1
    assert "a cutout model needs a mask: upload one, send an RGBA cutout, or provide a segmenter" in res.output
    # the photo model alone needs no mask; a mask makes the cutout model answer the cell's class
    ok = _invoke(["predict", str(a), "--model", "images", "--format", "json", "--model-dir", str(colour_dir)], tmp_path)
    assert ok.exit_code == 0 and json.loads(ok.stdout)[0]["predicted_class"] == "cylindrical"
    ok = _invoke(["predict", str(a), "--mask", str(two_photos[2]), "--model", "cutouts", "--format", "json",
                  "--model-dir", str(colour_dir)], tmp_path)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["predicted_class"] == "pouch" and json.loads(ok.stdout)[0]["mask_source"] == "uploaded"

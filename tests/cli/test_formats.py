"""Every photo format Pillow decodes reaches the models: folder predict and import-folders take WebP, AVIF, BMP
and TIFF beside JPEG and PNG, and say which types they looked for when a folder has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from evbattery.cli.app import app
from evbattery.cli.predict import image_files
from evbattery.core.imageio import load_rgb

FORMATS = {"webp": {"lossless": True}, "avif": {"quality": 90}, "bmp": {}, "tiff": {}, "jpg": {}, "png": {}}


def write_photos(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arr = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for ext, kw in FORMATS.items():
        Image.fromarray(arr).save(folder / f"cell.{ext}", **kw)
    (folder / "notes.txt").write_text("not a photo")
    return {"arr": arr}


def test_folder_listing_takes_every_decodable_format(tmp_path):
    write_photos(tmp_path / "photos")
    found = image_files([tmp_path / "photos"])
    assert sorted(p.suffix for p in found) == sorted(f".{e}" for e in FORMATS)
    for p in found:  # and each one decodes to the photo (lossy AVIF/JPEG close, the rest exact)
        assert load_rgb(p).shape == (40, 48, 3)


def test_a_folder_without_photos_names_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "empty"), "--model-dir", str(tmp_path)])
    assert res.exit_code == 1 and "no images found" in res.output and ".avif" in res.output


@pytest.mark.parametrize("ext", ["webp", "avif", "tiff", "bmp"])
def test_import_folders_stores_other_formats_as_png(tmp_path, ext):
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    for cls in ("cylindrical", "pouch", "prismatic"):
        for i in range(4):
            arr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
            (src / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(src / cls / f"{cls}{i}.{ext}", **FORMATS[ext])
            mask = np.zeros((32, 32), np.uint8)
            mask[8:24, 8:24] = 255
            Image.fromarray(mask).save(src / cls / f"{cls}{i}_mask.png")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["data", "import-folders", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = [p for p in out.rglob("images/*/*") if p.is_file()]
    assert len(written) == 12 and {p.suffix for p in written} == {".png"}

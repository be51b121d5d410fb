"""`evbattery data check`: a clean import passes and prints its table; each injected fault is named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from recybat_fixture import build_recybat
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import save_png
from evbattery.data.layout import DatasetLayout

runner = CliRunner()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An imported RecyBat24-like dataset, never modified (tests copy it)."""
    base = tmp_path_factory.mktemp("check")
    man = build_recybat(base)
    out = base / "processed"
    res = runner.invoke(app, ["data", "import-recybat24", str(man.root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture()
def data(clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path / "reports"))
    return Path(shutil.copytree(clean, tmp_path / "data"))


def _check(data: Path) -> tuple[int, str, dict]:
    res = runner.invoke(app, ["data", "check", "--data", str(data)])
    report = json.loads((data.parent / "reports" / "data_check.json").read_text())
    return res.exit_code, res.output, report


def _first(data: Path, split: str = "train"):
    return DatasetLayout(data).samples(split)[0]


def test_clean_dataset_passes_and_prints_table(data: Path) -> None:
    code, out, report = _check(data)
    assert code == 0, out
    assert report["ok"] is True and report["problems"] == []
    assert report["counts"]["train"] == {"cylindrical": 2, "pouch": 1, "prismatic": 2}
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "split cylindrical pouch prismatic total" in " ".join(out.replace("┃", " ").split())
    assert "train 2 1 2 5" in lines and "val 2 2 2 6" in lines and "test 4 4 4 12" in lines
    assert "total 8 7 8 23" in lines


def _unreadable(data: Path) -> Path:
    s = _first(data)
    s.image.write_bytes(b"this is not a jpeg")
    return s.image


def _missing_mask(data: Path) -> Path:
    s = _first(data)
    s.mask.unlink()
    return s.image


def _mask_size(data: Path) -> Path:
    s = _first(data)
    save_png(np.full((10, 12), 255, np.uint8), s.mask)
    return s.mask


def _empty_mask(data: Path) -> Path:
    s = _first(data, "val")
    save_png(np.zeros((32, 40), np.uint8), s.mask)
    return s.mask


def _unknown_class(data: Path) -> Path:
    s = _first(data)
    d = data / "train" / "images" / "cylinders"
    d.mkdir()
    shutil.copy(s.image, d / "extra.jpg")
    return d


def _duplicate(data: Path) -> Path:
    s = _first(data)
    layout = DatasetLayout(data)
    dup = layout.image_path("test", s.cls, "copied_from_train")
    shutil.copy(s.image, dup)
    shutil.copy(s.mask, layout.mask_path("test", s.cls, "copied_from_train"))
    shutil.copy(s.cutout, layout.cutout_path("test", s.cls, "copied_from_train"))
    return dup


@pytest.mark.parametrize(("kind", "inject"), [
    ("unreadable_image", _unreadable),
    ("missing_mask", _missing_mask),
    ("mask_size_mismatch", _mask_size),
    ("empty_mask", _empty_mask),
    ("unknown_class_folder", _unknown_class),
    ("duplicate_across_splits", _duplicate),
])
def test_fault_is_found(data: Path, kind: str, inject: Callable[[Path], Path]) -> None:
    bad = inject(data)
    code, out, report = _check(data)
    assert code != 0
    assert [p["kind"] for p in report["problems"]] == [kind], report["problems"]
    flat = " ".join(out.split())
    assert kind in flat and bad.name in flat
    mentioned = report["problems"][0]["path"] + report["problems"][0]["detail"]
    assert str(bad) in mentioned
    assert "images per split and class" in flat  # the table is printed even when something is wrong


def test_missing_dataset_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path / "reports"))
    res = runner.invoke(app, ["data", "check", "--data", str(tmp_path / "none")])
    assert res.exit_code != 0 and "does not exist" in res.output

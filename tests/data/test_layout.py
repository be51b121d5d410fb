"""The dataset folder contract: paths, samples, card, staged output."""

from __future__ import annotations

from pathlib import Path

import pytest

from evbattery.data.layout import DatasetError, DatasetLayout, staged_output


def test_paths_follow_contract(tmp_path: Path) -> None:
    lay = DatasetLayout(tmp_path)
    assert lay.image_path("train", "pouch", "a", ".png") == tmp_path / "train/images/pouch/a.png"
    assert lay.mask_path("val", "pouch", "a") == tmp_path / "val/masks/pouch/a.png"
    assert lay.cutout_path("test", "prismatic", "b") == tmp_path / "test/cutouts/prismatic/b.png"
    assert lay.card_path == tmp_path / "dataset.json"


def test_unknown_split_or_kind_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown split 'training'"):
        DatasetLayout(tmp_path).dir("training", "images")
    with pytest.raises(DatasetError, match="unknown kind 'mask'"):
        DatasetLayout(tmp_path).dir("train", "mask")


def test_samples_counts_and_card(toy_dataset: Path) -> None:
    lay = DatasetLayout(toy_dataset)
    samples = lay.samples("train")
    assert len(samples) == 36
    assert all(s.mask.is_file() and s.cutout.is_file() for s in samples)
    assert lay.counts()["val"] == {"cylindrical": 6, "pouch": 6, "prismatic": 6}
    card = lay.read_card()
    assert card["format"] == "evbattery.dataset/1" and card["counts"]["test"]["pouch"] == 6
    assert lay.image_meta(samples[0])["background"] in {"light", "dark"}
    assert len(lay.fingerprint()) == 16


def test_require_split_explains_missing_data(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        DatasetLayout(tmp_path / "nope").require_split("train")
    (tmp_path / "train" / "images" / "pouch").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no images"):
        DatasetLayout(tmp_path).require_split("train")


def test_malformed_card_names_file(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{nope")
    with pytest.raises(DatasetError, match=r"dataset\.json: not valid JSON"):
        DatasetLayout(tmp_path).read_card()


def test_staged_output_moves_on_success_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out) as tmp:
        (tmp / "f.txt").write_text("x")
        assert not out.exists()
    assert (out / "f.txt").read_text() == "x"
    with pytest.raises(DatasetError, match="not empty"), staged_output(out):
        pass
    with pytest.raises(RuntimeError), staged_output(out, overwrite=True) as tmp:
        (tmp / "g.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left behind
    assert not (out / "g.txt").exists() and (out / "f.txt").exists()

"""Packs in the synthetic photos: many cells in one silhouette, the area a single cell would cover. Cylindrical
cells come as packs (rows, honeycombs), prismatic cans as modules; pouch photos never show either."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from evbattery.data.synth import packs
from evbattery.data.synth.generate import Task, render_task
from evbattery.data.synth.packs import render_cylindrical_pack, render_pack
from evbattery.data.synth.prismatic import render_prismatic
from evbattery.data.synth.raster import Light

LIGHT = Light(np.array([0.3, 0.2, 0.9]) / np.linalg.norm([0.3, 0.2, 0.9]), 0.4)


@pytest.mark.parametrize("seed", range(6))
def test_a_pack_has_many_cells_and_the_area_it_was_asked_for(seed: int) -> None:
    area = 0.2 * 128 * 128
    layer = render_cylindrical_pack(area, np.random.default_rng(seed), LIGHT)
    assert layer.pose["pack"] in ("row", "honeycomb") and layer.pose["cells"] >= 3
    assert layer.rgb.shape == (*layer.alpha.shape, 3) and layer.rgb.dtype == np.float32
    assert layer.alpha.min() >= 0.0 and layer.alpha.max() <= 1.0
    assert layer.alpha.sum() == pytest.approx(area, rel=0.15)  # size must not name the class
    # trimmed to the pack: every border row and column of the layer touches the pack
    assert layer.alpha[0].max() > 0 and layer.alpha[-1].max() > 0
    assert layer.alpha[:, 0].max() > 0 and layer.alpha[:, -1].max() > 0


@pytest.mark.parametrize("n_cells", [2, 4, 6])
def test_a_module_is_n_standing_cans_with_the_area_it_was_asked_for(n_cells: int) -> None:
    area = 0.2 * 160 * 160
    for seed in range(4):
        layer = render_prismatic(area, np.random.default_rng(seed), LIGHT, n_cells=n_cells)
        assert layer.pose["pack"] == "module" and layer.pose["cells"] == n_cells and layer.pose["pose"] == "standing"
        assert layer.alpha.sum() == pytest.approx(area, rel=0.15)  # size must not name the class
        assert layer.rgb.shape == (*layer.alpha.shape, 3) and layer.rgb.min() >= 0 and layer.rgb.max() <= 255


def test_default_photos_are_those_of_generator_1_1() -> None:
    """Modules are off by default, and a single can draws the same random numbers as before they existed: the
    photos of a seed are byte for byte those of generator 1.1 (checksum computed with the code at f69e78e)."""
    h = hashlib.sha256()
    for i, cls in enumerate(["prismatic", "cylindrical", "pouch"] * 2):
        s = render_task(Task("train", i, cls, "wood", False), 64, 3)
        h.update(s.image.tobytes())
        h.update(s.mask.tobytes())
    assert h.hexdigest() == "7e69eedc64546471d8612749c3707ef27cf59d9fa32eabee0165ca4b809d52d2"


def test_there_are_no_pouch_packs() -> None:
    with pytest.raises(ValueError, match="no pack of 'pouch' cells"):
        render_pack("pouch", 100.0, np.random.default_rng(0), LIGHT)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_packs_appear_in_cylindrical_and_prismatic_photos_only(share: float, monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in packs.PACK_SHARES:
        monkeypatch.setitem(packs.PACK_SHARES, cls, share)
    n = 6
    for cls, kinds in (("cylindrical", {"row", "honeycomb"}), ("prismatic", {"module"}), ("pouch", set())):
        scenes = [render_task(Task("train", i, cls, "wood", False), 96, 7) for i in range(n)]
        with_pack = [s for s in scenes if "pack" in s.meta["pose"][0]]
        assert len(with_pack) == (n if share and kinds else 0), cls
        for s in with_pack:
            assert s.meta["pose"][0]["pack"] in kinds
            assert s.meta["n_cells"] == s.meta["pose"][0]["cells"] >= 2 and s.mask.max() == 255


@pytest.mark.slow
def test_generator_variant_script_scores_a_probe_on_a_real_photo_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/probe_generator_variant.py: synthetic photos with the given packs -> probe -> real photos (here the
    committed ones: cylindrical and pouch only, so prismatic has no recall)."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).parents[2]
    spec = importlib.util.spec_from_file_location("probe_generator_variant", root / "scripts" / "probe_generator_variant.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # its worker processes unpickle functions by module name
    spec.loader.exec_module(mod)
    res = mod.run({"prismatic": 0.5}, close_up=0.5, size=64, n=12, n_test=6, dev=root / "benchmarks/real_photos/photos",
                  boards=0.5, studio=0.5)
    assert res["shares"] == {"cylindrical": 0.03, "prismatic": 0.5} and res["n"] == 12
    assert res["boards"] == res["studio"] == 0.5
    for c in ("C=0.0001", "C=0.0003", "C=0.001"):
        r = res[c]
        assert set(r["dev_recall"]) == {"cylindrical", "pouch"}
        assert r["dev_balanced"] == pytest.approx(np.mean(list(r["dev_recall"].values())), abs=0.01)
        assert 0 <= r["synthetic_test"] <= 1 and 0 < r["dev_nll"] < 20

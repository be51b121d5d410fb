"""Packs of cylindrical cells in the synthetic photos: many cells in one silhouette, the area a single cell
would cover, and only in cylindrical photos."""

from __future__ import annotations

import numpy as np
import pytest

from evbattery.data.synth import packs
from evbattery.data.synth.generate import Task, render_task
from evbattery.data.synth.packs import render_cylindrical_pack
from evbattery.data.synth.raster import Light


@pytest.mark.parametrize("seed", range(6))
def test_a_pack_has_many_cells_and_the_area_it_was_asked_for(seed: int) -> None:
    light = Light(np.array([0.3, 0.2, 0.9]), 0.4)
    area = 0.2 * 128 * 128
    layer = render_cylindrical_pack(area, np.random.default_rng(seed), light)
    assert layer.pose["pack"] in ("row", "honeycomb") and layer.pose["cells"] >= 3
    assert layer.rgb.shape == (*layer.alpha.shape, 3) and layer.rgb.dtype == np.float32
    assert layer.alpha.min() >= 0.0 and layer.alpha.max() <= 1.0
    assert layer.alpha.sum() == pytest.approx(area, rel=0.15)  # size must not name the class
    # trimmed to the pack: every border row and column of the layer touches the pack
    assert layer.alpha[0].max() > 0 and layer.alpha[-1].max() > 0
    assert layer.alpha[:, 0].max() > 0 and layer.alpha[:, -1].max() > 0


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_packs_appear_in_cylindrical_photos_only(share: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packs, "PACK_SHARE", share)
    n = 8
    for cls in ("cylindrical", "prismatic", "pouch"):
        scenes = [render_task(Task("train", i, cls, "wood", False), 96, 7) for i in range(n)]
        with_pack = [s for s in scenes if "pack" in str(s.meta["pose"])]
        assert len(with_pack) == (n if share and cls == "cylindrical" else 0), cls
        for s in with_pack:
            assert s.meta["n_cells"] >= 3 and s.mask.max() == 255


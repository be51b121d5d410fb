"""Scene options of the generator for real photos: circuit boards (a flat, coloured distractor with two leads,
beside the cells and never part of the mask; on real bench and product photos the segmenter took boards for
cells) and product shots on a white backdrop. Off by default: the default photos are pinned in test_packs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.data.synth.generate import Task, generate_dataset, render_task


@pytest.mark.parametrize("cls", ["cylindrical", "pouch", "prismatic"])
def test_boards_lie_beside_the_cells_and_stay_out_of_the_mask(cls: str) -> None:
    n = 8
    with_board = [render_task(Task("train", i, cls, "lab_bench", False), 128, 5, board_share=1.0) for i in range(n)]
    without = [render_task(Task("train", i, cls, "lab_bench", False), 128, 5) for i in range(n)]
    assert sum("board" in s.meta["occluders"] for s in with_board) >= n - 1  # room is found nearly always
    assert not any("board" in s.meta["occluders"] for s in without)
    for s in with_board:
        assert not ((s.mask > 0) & (s.occluder_coverage >= 0.5)).any()
        assert s.mask.max() == 255 and s.meta["occluded_fraction"] <= 0.35
    # a board is a large object: the occluders cover far more of the frame than screws and cables alone
    occ = [float((s.occluder_coverage >= 0.5).mean()) for s in with_board]
    occ0 = [float((s.occluder_coverage >= 0.5).mean()) for s in without]
    assert np.mean(occ) > 2 * np.mean(occ0) and min(occ) > 0.01


def test_the_card_records_the_shares_and_about_that_share_of_photos_has_each(tmp_path) -> None:
    out = generate_dataset(tmp_path / "d", n_train=30, n_val=0, n_test=0, size=64, seed=2, workers=1,
                           progress=False, board_share=0.5, studio_share=0.5)
    card = json.loads((out / "dataset.json").read_text())
    assert card["source"]["params"]["board_share"] == card["source"]["params"]["studio_share"] == 0.5
    studio = [m for m in card["images"].values() if m["backdrop"] == "studio"]
    assert 7 <= len(studio) <= 23
    assert all(m["background"] == "studio" and not m["home"] for m in studio)  # grouped apart by the bias suite
    boards = sum("board" in m["occluders"] for m in card["images"].values())
    assert 7 <= boards <= 23  # Binomial(30, ~0.5)


def test_studio_photos_sit_on_a_bright_grey_backdrop() -> None:
    def backdrop(s) -> np.ndarray:  # pixels of neither cell nor distractor, away from their shadows
        from scipy.ndimage import binary_dilation

        things = (s.cell_coverage > 0.01) | (s.occluder_coverage > 0.01)
        return s.image[~binary_dilation(things, iterations=12)].astype(np.float32)

    for i, family in enumerate(("wood", "esd_mat", "cluttered_tray", "concrete")):
        task = Task("train", i, "pouch", family, False)
        studio, plain = render_task(task, 128, 9, studio_share=1.0), render_task(task, 128, 9)
        assert studio.meta["backdrop"] == "studio" and plain.meta["backdrop"] == "family"
        b = backdrop(studio)
        assert b.mean() > 120 and b.mean() > backdrop(plain).mean()
        assert np.abs(b.mean(0) - b.mean()).max() < 25  # near grey: a light's tint at most


@pytest.mark.parametrize("option", ["--boards", "--studio"])
def test_a_share_outside_0_1_is_one_clear_line_and_writes_nothing(tmp_path, option: str) -> None:
    out = tmp_path / "d"
    r = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n-train", "3", "--n-val", "0", "--n-test",
                                 "0", "--size", "48", option, "1.5"])
    assert r.exit_code == 1, r.output
    assert option in r.output and "Traceback" not in r.output
    assert not out.exists()

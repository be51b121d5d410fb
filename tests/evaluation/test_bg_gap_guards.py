"""BG-Gap on models whose behaviour is known: large for a model that reads only the background, exactly 0
for one that cannot see it (issue 25, breakage 5: Mixed-Same built from Mixed-Rand's donors read 0).

The models are hand-built ResNet-18 checkpoints (tests/known_models.py): the photo model answers the class
whose colour channel dominates the photo (the background, which covers ~92 % of the frame); the cutout model
sees the cell on black and answers the class of the cell's colour. The data are written to disk in the folder
contract and go through the real suite (`run_bias_suite`: partners, variants, Predictor, metrics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from known_models import write_colour_dataset, write_colour_readers

from evbattery.evaluation.bias import run_bias_suite


@pytest.fixture(scope="module")
def colour_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_readers(tmp_path_factory.mktemp("colour_models"))


@pytest.mark.parametrize("balanced", [False, True], ids=["bg-follows-class", "balanced-with-home-families"])
def test_bg_gap_large_for_a_background_reader_and_zero_for_a_cutout_model(colour_models: Path, tmp_path: Path,
                                                                           balanced: bool) -> None:
    data = write_colour_dataset(tmp_path / "data", per_group=6 if balanced else 12, balanced=balanced)
    summary = run_bias_suite(data, colour_models, seed=0, cam_limit=2, n_examples=1, progress=False).summary
    bg_model, cell_model = summary["evaluations"]["images"], summary["evaluations"]["cutouts[true]"]
    acc = bg_model["accuracy"]

    # The background reader: right whenever the background is its class's own, at chance-ish otherwise.
    assert acc["mixed_same"] == 1.0, acc
    assert acc["mixed_rand"] < 0.6, acc  # 1/3 expected: the donor's background is any class's
    assert acc["mixed_next"] == 0.0, acc  # always the next class's background
    assert acc["only_bg_t"] == acc["no_fg"] == acc["original"], acc  # the cell never mattered to it
    assert acc["original"] == (pytest.approx(1 / 3, abs=0.01) if balanced else 1.0), acc
    assert bg_model["bg_gap"] == pytest.approx(acc["mixed_same"] - acc["mixed_rand"])
    assert bg_model["bg_gap"] > 0.4, acc

    # The cutout model never sees a background: every variant that keeps the cell scores the same.
    cacc = cell_model["accuracy"]
    assert cacc["original"] == cacc["only_fg"] == cacc["mixed_same"] == cacc["mixed_rand"] == cacc["mixed_next"] == 1.0
    assert cell_model["bg_gap"] == 0.0
    if balanced:
        # The worst group of the background reader is a class on another class's home background: 0.
        assert bg_model["worst_group"]["accuracy"] == 0.0 and cell_model["worst_group"]["accuracy"] == 1.0
        assert "home families" in summary["mixed_partner_rule"]


def test_bg_gap_through_the_cli(colour_models: Path, tmp_path: Path) -> None:
    """`evbattery bias` writes the same large BG-Gap for the background reader into report.json."""
    import json

    from typer.testing import CliRunner

    from evbattery.cli import app

    data = write_colour_dataset(tmp_path / "data", per_group=9, balanced=False)
    out = tmp_path / "bias"
    res = CliRunner().invoke(app, ["bias", "--data", str(data), "--model-dir", str(colour_models), "--out", str(out),
                                   "--tracker", "none", "--cam-limit", "2"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    evals = report["evaluations"]
    assert evals["images"]["bg_gap"] > 0.4 and evals["cutouts[true]"]["bg_gap"] == 0.0
    assert np.isclose(evals["images"]["accuracy"]["mixed_same"], 1.0)

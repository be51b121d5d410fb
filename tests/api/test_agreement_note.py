"""The agreement verdict with models whose answers are known (issue 25, breakage 3: `agree` forced to False).

The photo models read the background's colour, the cutout model the cell's (tests/known_models.py). A photo
whose background and cell have the same class colour must come back "Models agree"; one whose background
says pouch and cell says prismatic, "Models disagree". No recomputation with the code's own formula: the
expected answers are written down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import encode, files
from known_models import photo, write_colour_readers
from typer.testing import CliRunner

from evbattery.core.imageio import save_png

pytestmark = pytest.mark.slow  # starts a server

MODELS = (("images", "images"), ("cutouts", "cutouts"), ("images_debiased", "images"))


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_readers(tmp_path_factory.mktemp("colour_api"), names=MODELS)


@pytest.fixture(scope="module")
def colour_client(colour_dir: Path) -> Iterator[httpx.Client]:
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings

    with (running_server(create_app(ApiSettings(model_dir=colour_dir, api_key=None))) as base,
          httpx.Client(base_url=base, timeout=60) as c):
        yield c


def _upload(bg: int, cell: int, seed: int = 0) -> dict:
    img, mask = photo(bg, cell, seed=seed)
    return files(encode(img), encode(mask))


@pytest.mark.parametrize(("bg", "cell"), [(0, 0), (1, 1), (2, 2)])
def test_both_says_agree_when_background_and_cell_name_the_same_class(colour_client: httpx.Client, bg: int,
                                                                       cell: int) -> None:
    both = colour_client.post("/predict/both", files=_upload(bg, cell)).json()
    cls = ("cylindrical", "pouch", "prismatic")[cell]
    assert both["image_model"]["predicted_class"] == cls and both["cutout_model"]["predicted_class"] == cls
    assert both["agree"] is True
    assert both["note"] == "Models agree"
    assert both["mask_source"] == "uploaded"


@pytest.mark.parametrize(("bg", "cell"), [(1, 2), (0, 1), (2, 0)])
def test_both_says_disagree_when_the_background_names_another_class(colour_client: httpx.Client, bg: int,
                                                                     cell: int) -> None:
    both = colour_client.post("/predict/both", files=_upload(bg, cell, seed=7)).json()
    classes = ("cylindrical", "pouch", "prismatic")
    assert both["image_model"]["predicted_class"] == classes[bg]
    assert both["cutout_model"]["predicted_class"] == classes[cell]
    assert both["agree"] is False
    assert both["note"] == "Models disagree – possible background bias"


def test_all_reports_votes_and_majority(colour_client: httpx.Client) -> None:
    same = colour_client.post("/predict/all", files=_upload(2, 2)).json()
    assert same["agree"] is True and same["note"] == "Models agree" and same["majority_class"] == "prismatic"
    assert same["votes"] == {"prismatic": ["images", "cutouts", "images_debiased"]}
    split = colour_client.post("/predict/all", files=_upload(1, 2)).json()
    assert split["agree"] is False and split["note"] == "Models disagree – possible background bias"
    assert split["votes"] == {"pouch": ["images", "images_debiased"], "prismatic": ["cutouts"]}
    assert split["majority_class"] == "pouch"  # two photo models against one cutout model


def test_predict_cli_agree_column(colour_dir: Path, tmp_path: Path) -> None:
    """`evbattery predict --model both --format json` carries the same verdict per file."""
    import json

    from evbattery.cli import app

    out = {}
    for name, (bg, cell) in {"same": (0, 0), "differ": (0, 2)}.items():
        img, mask = photo(bg, cell, seed=3)
        save_png(img, tmp_path / f"{name}.png")
        save_png(mask, tmp_path / f"{name}_mask.png")
        res = CliRunner().invoke(app, ["predict", str(tmp_path / f"{name}.png"), "--mask", str(tmp_path / f"{name}_mask.png"),
                                       "--model", "both", "--format", "json", "--model-dir", str(colour_dir)],
                                 env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout[res.stdout.index("["):])
        out[name] = {r["model_used"]: (r["predicted_class"], r["agree"]) for r in rows}
    assert out["same"] == {"images": ("cylindrical", True), "cutouts": ("cylindrical", True)}
    assert out["differ"] == {"images": ("cylindrical", False), "cutouts": ("prismatic", False)}

"""The Classify page's banner with models whose answers are known (issue 25, breakage 3: verdict inverted).

Real API (uvicorn subprocess on loopback) over hand-built colour-reading models (tests/known_models.py);
the page is driven with Streamlit's AppTest. A photo whose background and cell name the same class must
show the green "The models agree" banner; one whose background names another class, the warning
"The models disagree".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from known_models import photo, write_colour_readers
from live import api_server
from PIL import Image
from streamlit.testing.v1 import AppTest

import evbattery

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# The page of the evbattery that is imported (not a path into this checkout), so the test follows the package.
PAGE = Path(evbattery.__file__).parent / "ui" / "app_pages" / "classify.py"


def _png(arr) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def colour_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("colour_ui")
    models = write_colour_readers(tmp / "model")
    with api_server(models, tmp) as (url, _proc):
        yield url


def _classify(url: str, bg: int, cell: int, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("EVBATTERY_API_URL", url)
    img, mask = photo(bg, cell, seed=11)
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    at.toggle[0].set_value(False)  # no Grad-CAM: the banner is under test
    at.file_uploader[0].set_value(("cell.png", _png(img), "image/png"))
    at.file_uploader[1].set_value(("mask.png", _png(mask), "image/png"))
    at.run()
    assert not at.exception, at.exception
    return at


def test_banner_says_agree_for_a_photo_where_the_models_agree(colour_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _classify(colour_api, 1, 1, monkeypatch)
    assert [s.value for s in at.success] and not at.warning
    assert at.success[0].value.startswith("**The models agree: pouch.**")


def test_banner_says_disagree_for_a_photo_where_they_do_not(colour_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _classify(colour_api, 0, 2, monkeypatch)
    assert not at.success and [w.value for w in at.warning]
    text = at.warning[0].value
    assert text.startswith("**The models disagree:**")
    assert "Full image → **cylindrical**" in text and "Cutout (background removed) → **prismatic**" in text

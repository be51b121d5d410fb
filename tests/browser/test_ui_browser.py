"""Real Chromium (Debian's, via Playwright) against the real Streamlit UI and the real API on loopback."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import api_server, ui_server
from serving_models import tiny_model_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS_TO_DOCS = os.environ.get("EVBATTERY_UI_SHOTS")  # set to docs/ to refresh the README screenshots


@pytest.fixture(scope="module")
def stack(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Tiny trained models -> API (uvicorn) -> UI (streamlit), all real, on free 127.0.0.1 ports."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)")
    tmp = tmp_path_factory.mktemp("ui_stack")
    models = tiny_model_dir(toy_dataset, tmp / "model")
    with api_server(models, tmp) as (api_url, api_proc), ui_server(api_url, toy_dataset, tmp) as ui_url:
        yield {"api": api_proc, "api_url": api_url, "ui": ui_url, "tmp": tmp, "data": toy_dataset}


@pytest.fixture()
def page(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1400})
        pg.set_default_timeout(90_000)
        yield pg
        browser.close()


def _photo(data: Path) -> tuple[Path, Path]:
    image = min((data / "test" / "images" / "pouch").glob("*.jpg"))
    return image, data / "test" / "masks" / "pouch" / f"{image.stem}.png"


def _upload(page, ui_url: str, data: Path) -> None:
    page.goto(ui_url)
    page.get_by_text("Classify a battery cell").wait_for()
    image, mask = _photo(data)
    inputs = page.locator('input[type="file"]')
    # Mask first, and wait until the uploader lists it. Each upload reruns the script; a photo sent first
    # starts a mask-less run (an API error) while the mask is still on its way, and once in CI the banner
    # then never came. Without a photo the page stops before it asks the API, so only one run asks.
    inputs.nth(1).set_input_files(str(mask))
    page.get_by_text(mask.name).first.wait_for()
    inputs.nth(0).set_input_files(str(image))


def _wait_for_text(page, text: str) -> None:
    """Wait for text on the page; on a timeout, fail with what the page shows instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).first.wait_for()
    except PlaywrightTimeout:
        pytest.fail(f"{text!r} never appeared; the page shows:\n{page.inner_text('body')[:3000]}")


def _shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if SHOTS_TO_DOCS:
        page.screenshot(path=str(Path(SHOTS_TO_DOCS) / f"{name}.png"), full_page=False)


def test_upload_shows_both_predictions_and_banner(stack: dict, page, tmp_path: Path) -> None:
    import httpx

    image, mask = _photo(stack["data"])
    files = {"file": (image.name, image.read_bytes(), "image/jpeg"), "mask": (mask.name, mask.read_bytes(), "image/png")}
    api = httpx.post(f"{stack['api_url']}/predict/all", files=files, timeout=60).json()
    # the banner says what the API says: unsure first, unfamiliar next, then agree (naming the class) or disagree
    expected = ("Unsure:" if api["unsure"] else "Unfamiliar photo:" if api["unfamiliar"] else
                f"The models agree: {api['majority_class']}" if api["agree"] else "The models disagree")
    _upload(page, stack["ui"], stack["data"])
    _wait_for_text(page, expected)
    for col in range(3):  # one column per model; Streamlit renders them one after the other
        page.get_by_text("Grad-CAM: red = where the model looked").nth(col).wait_for()
    body = page.inner_text("body")
    assert "Full image" in body and "Cutout (background removed)" in body
    assert "Cutout used (mask from the mask you uploaded)" in body
    # Every model's column (images, cutouts, images_debiased) shows every class with a probability,
    # and the three of a column sum to ~100 %.
    probs = re.findall(r"(cylindrical|pouch|prismatic): (\d+\.\d)%", body)
    assert len(probs) == 9, probs
    for col in range(3):
        assert abs(sum(float(p) for _, p in probs[3 * col:3 * col + 3]) - 100) < 0.5
    assert re.search(r"### |confidence \d+\.\d%", body) or "confidence" in body
    _shot(page, tmp_path, "ui_classify")
    assert (tmp_path / "ui_classify.png").stat().st_size > 10_000
    page.get_by_role("link", name="Models").click()
    page.get_by_text("Loaded models").wait_for()
    page.get_by_text("is ready").wait_for()
    _shot(page, tmp_path, "ui_models")


def test_api_stopped_shows_friendly_error(stack: dict, page, tmp_path: Path) -> None:
    stack["api"].terminate()
    stack["api"].wait(timeout=20)
    _upload(page, stack["ui"], stack["data"])
    err = page.get_by_text(re.compile("is not reachable"))
    err.wait_for()
    text = err.inner_text()
    assert "connection refused" in text and "evbattery demo" in text
    assert "Traceback" not in page.inner_text("body")
    _shot(page, tmp_path, "ui_api_down")

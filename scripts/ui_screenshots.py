"""Refresh the README screenshots from a running demo (`make run`): docs/ui_*.png.

Usage: python scripts/ui_screenshots.py [--ui http://127.0.0.1:8501] [--data data/processed]
Needs Debian's Chromium at /usr/bin/chromium (never `playwright install`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ui", default="http://127.0.0.1:8501")
    ap.add_argument("--data", type=Path, default=Path("data/processed"))
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--image", type=Path, default=None, help="photo to upload (default: first test pouch)")
    args = ap.parse_args()
    image = args.image or min((args.data / "test" / "images" / "pouch").glob("*.jpg"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        page.set_default_timeout(120_000)
        page.goto(args.ui)
        page.get_by_text("Classify a battery cell").wait_for()
        page.locator('input[type="file"]').nth(0).set_input_files(str(image))
        page.get_by_text(re.compile(r"The models (agree|disagree)")).wait_for()
        page.get_by_text("Grad-CAM: red = where the model looked").first.wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "ui_classify.png"))
        page.get_by_role("link", name="Bias report").click()
        page.wait_for_timeout(4000)
        page.screenshot(path=str(args.out / "ui_bias_report.png"))
        page.get_by_role("link", name="Models").click()
        page.get_by_text("Loaded models").wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "ui_models.png"))
        browser.close()
    print(f"wrote {args.out}/ui_classify.png, ui_bias_report.png, ui_models.png")


if __name__ == "__main__":
    main()

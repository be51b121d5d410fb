"""Page logic with streamlit's AppTest: routing, the API-down message, the bias report from files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from evbattery.core.imageio import save_png
from evbattery.experiments.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "src" / "evbattery" / "ui" / "app_pages"


@pytest.fixture()
def api_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """EVBATTERY_API_URL pointing at a loopback port nothing listens on."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("EVBATTERY_API_URL", url)
    return url


def test_entrypoint_routes_to_classify_with_api_url_in_sidebar(api_down: str) -> None:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Classify a battery cell"
    assert at.sidebar.text_input[0].value == api_down


def test_classify_upload_with_api_down_shows_friendly_error(api_down: str, toy_dataset: Path) -> None:
    at = AppTest.from_file(str(PAGES / "classify.py"), default_timeout=30).run()
    assert not at.error  # nothing asked yet
    photo = next((toy_dataset / "test" / "images" / "pouch").glob("*.jpg")).read_bytes()
    at.file_uploader[0].set_value(("cell.jpg", photo, "image/jpeg"))
    at.run()
    assert not at.exception
    msg = at.error[0].value
    assert "not reachable" in msg and api_down in msg and "evbattery demo" in msg
    assert "Traceback" not in msg


def test_classify_sample_picker_lists_test_split(api_down: str, toy_dataset: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_DATA_DIR", str(toy_dataset))
    at = AppTest.from_file(str(PAGES / "classify.py"), default_timeout=30).run()
    at.radio[0].set_value("Sample from the test split").run()
    assert not at.exception
    options = at.selectbox[0].options
    assert len(options) == 18 and "cylindrical/cyl_test_000" in options
    assert "not reachable" in at.error[0].value  # the sample was sent straight away


def test_models_page_with_api_down(api_down: str) -> None:
    at = AppTest.from_file(str(PAGES / "models.py"), default_timeout=30).run()
    assert not at.exception
    assert "not reachable" in at.error[0].value


def _write_bias_report(reports: Path, report: dict) -> Path:
    """reports/bias/ as `evbattery bias` leaves it: report.json, report.md and the two figures."""
    bias = reports / "bias"
    bias.mkdir(parents=True)
    (bias / "report.json").write_text(json.dumps(report))
    (bias / "report.md").write_text("# Background-bias report\n\n| model | BG-Gap |\n|---|---|\n| images | 36.8 |\n\n"
                                    "![accuracy per variant](accuracy_by_variant.png)\n")
    for name in ("accuracy_by_variant.png", "examples_gradcam.png"):
        save_png(np.zeros((8, 8, 3), np.uint8), bias / name)
    return bias


def _inside(at: AppTest, label: str) -> object:
    return next(e for e in at.expander if e.label.startswith(label))


def test_bias_report_leads_with_figure_and_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_bias_summary import realistic_report

    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    _write_bias_report(tmp_path, realistic_report())
    at = AppTest.from_file(str(PAGES / "bias_report.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Background-bias report"
    # the verdicts, colored by level, in the report's order
    assert at.error[0].value.startswith("**images** relies on the background: 70.7 % with its class's home "
                                        "background behind the cell, 33.9 % on random ones")
    assert [s.value.split("**")[1] for s in at.success] == ["cutouts[true]", "images_debiased"]
    assert "little background reliance" in at.success[0].value and not at.warning
    # every table sits in an expander, none on the page itself
    assert len(at.dataframe) == 3 == sum(len(e.dataframe) for e in at.expander)
    variants = _inside(at, "Accuracy per variant").dataframe[0].value
    assert list(variants["model"]) == ["images", "cutouts[true]", "images_debiased"]
    assert float(variants["Mixed-Same"][0]) == pytest.approx(70.7)
    groups = _inside(at, "Accuracy per group").dataframe
    assert len(groups[0].value) == 9 and "p bias" in groups[1].value.columns
    assert "| images | 36.8 |" in _inside(at, "Full report").markdown[0].value
    assert "![" not in _inside(at, "Full report").markdown[0].value
    assert len(_inside(at, "Grad-CAM examples").get("image")) == 1
    assert len(at.get("image")) == 2  # the headline figure and, folded away, the examples
    assert at.main.children[2].type == "image"  # the figure comes right after the title and the caption
    assert not at.info


def test_bias_report_without_figure_draws_a_chart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_bias_summary import realistic_report

    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    bias = _write_bias_report(tmp_path, realistic_report())
    (bias / "accuracy_by_variant.png").unlink()
    at = AppTest.from_file(str(PAGES / "bias_report.py"), default_timeout=30).run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 1 and at.error and len(at.success) == 2


def test_bias_report_old_format_and_other_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    (tmp_path / "bias").mkdir()
    (tmp_path / "bias" / "report.md").write_text("## Variants\n\n| model | BG-Gap |\n|---|---|\n| images | 26.0 |\n\n"
                                                 "![fig](variants.png)\n")
    save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "bias" / "variants.png")
    (tmp_path / "bias" / "report.json").write_text(json.dumps({"bg_gap": {"images": 26.0}}))
    (tmp_path / "eval_images.json").write_text(json.dumps({"model": "images", "metrics": {"accuracy": 0.91},
                                                           "by_cell_size": [{"area_from": 0.01, "area_to": 0.02, "n": 34,
                                                                             "accuracy": 0.7353, "ci": [0.569, 0.854]}]}))
    (tmp_path / "sweep").mkdir()
    save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "sweep" / "bg_gap_vs_rho.png")
    at = AppTest.from_file(str(PAGES / "bias_report.py"), default_timeout=30).run()
    assert not at.exception
    assert "no per-model results" in at.info[0].value and "evbattery bias" in at.info[0].value
    full = _inside(at, "Full report")
    assert full.proto.expanded  # nothing else to show: the markdown is open
    md = " ".join(m.value for m in full.markdown)
    assert "| images | 26.0 |" in md and "![fig]" not in md
    ev = _inside(at, "Evaluation")
    df = ev.dataframe[0].value
    assert float(df["metrics.accuracy"][0]) == pytest.approx(0.91)
    size = ev.dataframe[1].value
    assert list(size["cell area"]) == ["1%–2%"] and int(size["n"][0]) == 34
    assert float(size["accuracy"][0]) == pytest.approx(0.7353) and size["95 % CI"][0] == "0.569–0.854"
    assert len(_inside(at, "Bias sweep").get("image")) == 1


def test_bias_report_empty_says_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(PAGES / "bias_report.py"), default_timeout=30).run()
    assert not at.exception
    assert len(at.info) == 1 and "evbattery bias" in at.info[0].value and "make run" in at.info[0].value
    assert not at.expander and not at.error and not at.success

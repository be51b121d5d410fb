"""The Models page shows the real-photo evaluation from reports/, whether or not the API is up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from evbattery.experiments.servers import free_port
from evbattery.ui.results import photo_eval_rows

PAGE = Path(__file__).resolve().parents[2] / "src" / "evbattery" / "ui" / "app_pages" / "models.py"

REPORT = {
    "folder": "data/real_photos/test", "n": 27, "counts": {"cylindrical": 14, "pouch": 6, "prismatic": 7},
    "classes": ["cylindrical", "pouch", "prismatic"], "notes": [], "skipped": [],
    "models": {"images": {"input": "images", "arch": "efficientnet_lite0", "balanced_accuracy": 0.7143,
                          "balanced_accuracy_ci": [0.52, 0.85], "accuracy": 0.74, "accuracy_ci": [0.55, 0.87],
                          "recall": {"cylindrical": {"n": 14, "recall": 0.857}, "pouch": {"n": 6, "recall": 0.5},
                                     "prismatic": {"n": 7, "recall": 0.714}},
                          "confusion": [[12, 1, 1], [2, 3, 1], [1, 1, 5]], "chance": 0.333}},
    "photos": [{"file": "data/real_photos/test/pouch/pou-009.jpg", "class": "pouch",
                "images": {"predicted_class": "pouch", "confidence": 0.81}}],
}


def test_rows_carry_the_interval_and_every_class_recall():
    (row,) = photo_eval_rows(REPORT)
    assert row["balanced accuracy"] == "71.4%" and row["95 % CI"] == "52%–85%"
    assert row["recall pouch"] == "50% (n=6)" and row["backbone"] == "efficientnet_lite0"


def test_models_page_shows_real_photo_results_with_the_api_down(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EVBATTERY_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    (tmp_path / "eval_photos_test.json").write_text(json.dumps(REPORT))
    at = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert not at.exception
    assert "not reachable" in at.error[0].value  # the API part says so ...
    assert any("27 photos" in s.value for s in at.subheader)  # ... and the report still shows
    assert at.dataframe[0].value.iloc[0]["balanced accuracy"] == "71.4%"


def test_models_page_says_how_to_make_the_real_photo_report(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EVBATTERY_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert any("evbattery evaluate --data" in i.value for i in at.info)

"""`evaluate --data <folder of class subfolders>`: every model on photos without masks, cutout models through
the segmenter, balanced accuracy with a Wilson interval, and the per-photo answers in reports/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from evbattery.cli.app import app
from evbattery.core.config import CLASSES
from evbattery.evaluation.photo_folder import balanced_accuracy, is_photo_folder, list_photos
from evbattery.inference.agreement import unsure_below


def test_balanced_accuracy_is_the_mean_recall_with_a_wilson_interval():
    y_true = np.array([0] * 10 + [1] * 10 + [2] * 10)
    y_pred = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 5 + [2] * 10)
    r = balanced_accuracy(y_true, y_pred, 3)
    assert r["value"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    ci = stats.binomtest(23, 30).proportion_ci(0.95, method="wilson")  # equal classes: plain Wilson on all
    assert r["ci"] == pytest.approx([ci.low, ci.high], abs=0.03)
    # an unbalanced set: a model that always says the big class has high accuracy but chance balanced accuracy
    y_true = np.array([0] * 50 + [1] * 5 + [2] * 5)
    r = balanced_accuracy(y_true, np.zeros_like(y_true), 3)
    assert r["value"] == pytest.approx(1 / 3) and r["ci"][0] < 1 / 3 < r["ci"][1]


def test_a_photo_folder_is_told_from_a_dataset(tmp_path, toy_dataset):
    (tmp_path / "pouch").mkdir()
    assert is_photo_folder(tmp_path) and not is_photo_folder(toy_dataset)
    with pytest.raises(ValueError, match="no photos under"):
        list_photos(tmp_path)


def photo_folder(toy_dataset: Path, out: Path) -> Path:
    """The toy test photos as <class>/<photo> with no masks (one as WebP: every format counts)."""
    for p in sorted(toy_dataset.glob("test/images/*/*")):
        (out / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, out / p.parent.name / p.name)
    first = next(out.glob("pouch/*"))
    from PIL import Image

    Image.open(first).save(first.with_suffix(".webp"), lossless=True)
    first.unlink()
    return out


def test_evaluate_scores_every_model_on_real_style_photos(toy_dataset, model_dir, tmp_path, monkeypatch):
    from toy_data import tiny_config

    from evbattery.training.train import main

    models = tmp_path / "model"
    shutil.copytree(model_dir, models)
    main(tiny_config(toy_dataset, tmp_path, input_type="masks", limit_train=16))  # writes model/segmenter.pth
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path / "reports"))
    folder = photo_folder(toy_dataset, tmp_path / "real" / "test")
    # without a segmenter the cutout models are left out, and the report says why
    res = CliRunner().invoke(app, ["evaluate", "--data", str(folder), "--model-dir", str(model_dir),
                                   "--tracker", "none"])
    assert res.exit_code == 0 and "cutout models skipped" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "real"), "--split", "test",
                                   "--model-dir", str(models), "--tracker", "none"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "reports" / "eval_photos_test.json").read_text())
    assert (tmp_path / "reports" / "eval_photos_test.png").stat().st_size > 1000
    n = len(list(folder.rglob("*.*")))
    assert report["n"] == n and len(report["photos"]) == n
    assert set(report["models"]) == {"images", "cutouts", "images_debiased"}
    assert report["models"]["cutouts"]["input"] == "cutouts (segmenter masks)"
    for name, r in report["models"].items():
        lo, hi = r["balanced_accuracy_ci"]
        assert lo <= r["balanced_accuracy"] <= hi and sum(map(sum, r["confusion"])) == n
        recalls = [v["recall"] for v in r["recall"].values()]
        assert r["balanced_accuracy"] == pytest.approx(np.mean(recalls))
        # the per-photo answers add up to the confusion matrix
        right = sum(p[name]["predicted_class"] == p["class"] for p in report["photos"])
        assert right == sum(r["confusion"][i][i] for i in range(3))
        # ... and to the confidence report: the unsure answers are those under the note's threshold
        assert (r["right_answers"]["n"], r["wrong_answers"]["n"]) == (right, n - right)
        unsure_wrong = sum(p[name]["predicted_class"] != p["class"] and p[name]["confidence"] < unsure_below(3)
                           for p in report["photos"])
        assert r["wrong_answers"]["unsure"] == unsure_wrong and 0 <= r["ece"] <= 1 and r["nll"] > 0


def test_the_confidence_report_counts_unsure_answers_and_scores_calibration() -> None:
    from evbattery.evaluation.photo_folder import confidence_report
    from evbattery.inference.predictor import Prediction

    def answer(probs: list[float]) -> Prediction:
        k = int(np.argmax(probs))
        return Prediction(CLASSES[k], probs[k], dict(zip(CLASSES, probs, strict=True)), "m")

    preds = [answer([0.9, 0.05, 0.05]), answer([0.4, 0.35, 0.25]), answer([0.1, 0.8, 0.1])]
    r = confidence_report(np.array([0, 1, 2]), preds)  # right and sure, wrong and unsure, wrong and sure
    assert r["wrong_answers"] == {"n": 2, "unsure": 1} and r["right_answers"] == {"n": 1, "unsure": 0}
    assert r["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.35) + np.log(0.1)) / 3)
    assert r["mean_confidence"] == pytest.approx(0.7)
    assert r["ece"] == pytest.approx((0.1 + 0.4 + 0.8) / 3)  # each answer alone in its confidence bin
    assert "unfamiliar" not in r  # no novelty score: nothing claimed about it


def test_the_confidence_report_counts_answers_for_unfamiliar_photos() -> None:
    from evbattery.evaluation.photo_folder import confidence_report
    from evbattery.inference.predictor import Prediction

    def answer(k: int, novelty: float) -> Prediction:
        probs = [0.9 if j == k else 0.05 for j in range(3)]
        return Prediction(CLASSES[k], 0.9, dict(zip(CLASSES, probs, strict=True)), "m", novelty=novelty)

    # right at 0.4, right at 1.5, wrong at 3.0, wrong at 1.0 (on the line: familiar)
    preds = [answer(0, 0.4), answer(1, 1.5), answer(0, 3.0), answer(1, 1.0)]
    r = confidence_report(np.array([0, 1, 2, 2]), preds)
    assert r["unfamiliar"] == 0.5
    assert r["wrong_answers"] == {"n": 2, "unsure": 0, "unfamiliar": 1}
    assert r["right_answers"] == {"n": 2, "unsure": 0, "unfamiliar": 1}

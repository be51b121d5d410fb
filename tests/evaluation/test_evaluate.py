"""Evaluation: metric arithmetic on hand-made predictions; evaluation through the Predictor; CLI reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evbattery.core.metrics import accuracy_by_cell_size, classification_metrics, expected_calibration_error

CLASSES = ["cylindrical", "pouch", "prismatic"]


def test_metrics_on_hand_made_predictions():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 2]
    probs = np.eye(3)[y_pred] * 0.7 + 0.1  # confidence 0.8 everywhere
    m = classification_metrics(y_true, y_pred, probs, CLASSES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert m["confusion"] == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert m["per_class"]["pouch"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["prismatic"]["precision"] == pytest.approx(2 / 3)
    f1s = [2 * 1 * 0.75 / 1.75, 0.5, 2 * (2 / 3) / (1 + 2 / 3)]
    assert m["macro_f1"] == pytest.approx(sum(f1s) / 3)
    assert m["ece"] == pytest.approx(abs(0.75 - 0.8))  # one bin: |acc - conf|


def test_ece_two_bins():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    # bin (0.9, 0.96]: acc 1 vs conf 0.95; bin (0.53, 0.6]: acc 0.5 vs conf 0.55
    assert expected_calibration_error(probs, [0, 0, 0, 1]) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


def test_accuracy_by_cell_size_bins_and_wilson_interval():
    area = [0.005, 0.015, 0.015, 0.03, 0.5, 1.0]
    correct = [False, True, False, True, True, True]
    bins = accuracy_by_cell_size(correct, area)
    # [0, 1 %): 0/1; [1, 2 %): 1/2; [2, 4 %): 1/1; [16, 100 %] (top edge included): 2/2; empty bins left out
    assert [(b["area_from"], b["n"], b["accuracy"]) for b in bins] == [
        (0.0, 1, 0.0), (0.01, 2, 0.5), (0.02, 1, 1.0), (0.16, 2, 1.0)]
    z = 1.959963984540054  # Wilson interval of 1 / 2 by its formula
    half = z * np.sqrt(0.25 / 2 + z**2 / 16) / (1 + z**2 / 2)
    assert bins[1]["ci"] == pytest.approx([0.5 - half, 0.5 + half])
    with pytest.raises(ValueError, match="3 outcomes but 2 cell areas"):
        accuracy_by_cell_size([True] * 3, [0.1, 0.2])


def test_evaluate_model_matches_predictor(toy_dataset, debiased_run):
    from evbattery.core.imageio import load_rgb
    from evbattery.data.layout import DatasetLayout
    from evbattery.evaluation.evaluate import evaluate_model
    from evbattery.inference.predictor import Predictor

    layout = DatasetLayout(toy_dataset)
    pred = Predictor.from_checkpoint(debiased_run[1]["checkpoint"])
    r = evaluate_model(pred, layout, "test", "cutouts")
    samples = layout.samples("test")
    direct = pred.predict([load_rgb(s.cutout) for s in samples])
    acc = np.mean([p.predicted_class == s.cls for p, s in zip(direct, samples, strict=True)])
    assert r["n"] == 18 and r["accuracy"] == pytest.approx(acc) and r["input"] == "cutouts"
    assert {"balanced_accuracy", "macro_f1", "per_class", "confusion", "ece"} <= set(r)
    assert len(r["misclassified"]) == round((1 - acc) * 18)
    # by cell size: the bins partition the split, and their n-weighted accuracy is the split's
    from evbattery.core.imageio import load_mask

    areas = sorted((load_mask(s.mask) >= 128).mean() for s in samples)
    bins = r["by_cell_size"]
    assert sum(b["n"] for b in bins) == 18
    assert sum(b["n"] * b["accuracy"] for b in bins) / 18 == pytest.approx(acc)
    assert bins[0]["area_from"] <= areas[0] and areas[-1] <= bins[-1]["area_to"]


def test_evaluate_cli_writes_reports_and_cross_table(toy_dataset, debiased_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from evbattery.cli import app

    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("EVBATTERY_RUNS_DIR", str(tmp_path / "runs"))
    model_dir = Path(debiased_run[0].model_dir)
    args = ["--data", str(toy_dataset), "--model-dir", str(model_dir), "--tracker", "none"]
    res = CliRunner().invoke(app, ["evaluate", "--input-type", "images_debiased", *args])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "reports/eval_images_debiased_test.json").read_text())
    assert rep["model"] == "images_debiased" and rep["n"] == 18
    assert sum(b["n"] for b in rep["by_cell_size"]) == 18 and "accuracy by cell size" in res.output
    assert (tmp_path / "reports/eval_images_debiased_test.png").stat().st_size > 1000
    res = CliRunner().invoke(app, ["evaluate", "--cross", *args])
    assert res.exit_code == 0, res.output
    cross = json.loads((tmp_path / "reports/eval_cross_test.json").read_text())
    assert cross["models"] == ["images_debiased"] and set(cross["accuracy"]["images_debiased"]) == {"images", "cutouts"}
    on_cutouts = json.loads((tmp_path / "reports/eval_images_debiased_on_cutouts_test.json").read_text())
    assert on_cutouts["accuracy"] == cross["accuracy"]["images_debiased"]["cutouts"] and on_cutouts["n"] == 18
    assert (tmp_path / "reports/eval_images_debiased_on_cutouts_test.png").is_file()
    res = CliRunner().invoke(app, ["evaluate", "--input-type", "nosuch", *args])
    assert res.exit_code == 1 and "not found" in res.output


def test_mask_iou_counts_pixels():
    from evbattery.core.metrics import mask_iou

    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    a[:2, :] = True   # 10 pixels
    b[1:3, :] = True  # 10 pixels, 5 shared
    assert mask_iou(a, b) == (5, 15)
    with pytest.raises(ValueError, match="mask shapes differ"):
        mask_iou(a, b[:3])


@pytest.mark.slow
def test_evaluate_segmenter_cli_reports_iou_at_photo_resolution(toy_dataset, tmp_path, monkeypatch):
    """`evaluate --model segmenter` goes through Segmenter.predict_masks (the API's path) and compares with the
    true masks at each photo's size; its pooled IoU is the one computed here independently. A missing mask is
    named; no segmenter is a clear error."""
    import shutil

    import torch
    from typer.testing import CliRunner

    from evbattery.cli import app
    from evbattery.core.imageio import load_mask, load_rgb
    from evbattery.data.layout import DatasetError, DatasetLayout
    from evbattery.evaluation.segmentation import evaluate_segmenter
    from evbattery.inference.segmenter import Segmenter
    from evbattery.models.segmenter import ARCH

    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("EVBATTERY_RUNS_DIR", str(tmp_path / "runs"))
    from toy_data import tiny_config

    from evbattery.training.train import main

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    main(tiny_config(toy_dataset, tmp_path, input_type="masks", epochs=4, batch_size=4))  # a real, briefly trained one
    args = ["--data", str(toy_dataset), "--model-dir", str(model_dir), "--tracker", "none"]
    res = CliRunner().invoke(app, ["evaluate", "--model", "segmenter", *args])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "reports/eval_segmenter_test.json").read_text())

    layout = DatasetLayout(toy_dataset)
    seg = Segmenter.from_checkpoint(model_dir / "segmenter.pth")
    samples = layout.samples("test")
    inter = union = 0
    for s in samples:
        pred, true = seg.predict_mask(load_rgb(s.image)) > 0, load_mask(s.mask) > 127
        assert pred.shape == true.shape  # compared at the photo's resolution, not the model's 32 px
        inter, union = inter + int((pred & true).sum()), union + int((pred | true).sum())
    assert rep["n"] == len(samples) == 18 and rep["arch"] == ARCH and rep["image_size"] == 32
    assert rep["iou"] == pytest.approx(inter / union)
    assert 0.0 < rep["iou"] < 1.0 and 0 < inter < union  # some cell pixels found, some missed
    assert 0.0 <= rep["per_image"]["p10"] <= rep["per_image"]["p50"] <= 1.0
    assert [w["iou"] for w in rep["worst"]] == sorted(w["iou"] for w in rep["worst"])

    broken = tmp_path / "broken"
    shutil.copytree(toy_dataset, broken)
    gone = DatasetLayout(broken).samples("test")[3].mask
    gone.unlink()
    with pytest.raises(DatasetError, match=str(gone.name)):
        evaluate_segmenter(seg, DatasetLayout(broken), "test")
    res = CliRunner().invoke(app, ["evaluate", "--model", "segmenter", *args[:2], "--model-dir", str(tmp_path),
                                   "--tracker", "none"])
    assert res.exit_code == 1 and "no segmenter" in res.output

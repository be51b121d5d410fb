"""The bias page's verdicts and tables from report.json (ui/bias_summary.py: pure, no streamlit, no torch)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from evbattery.core.imageio import save_png
from evbattery.ui import bias_summary as bs

VARIANTS = ["original", "only_fg", "no_fg", "only_bg_t", "mixed_same", "mixed_rand", "mixed_next"]
CLASSES = ["cylindrical", "pouch", "prismatic"]
FAMILIES = ["concrete", "grey tray", "wood"]


def _entry(model: str, acc: dict[str, float], groups: dict[str, float], cam: float, deficit: tuple[float, float, float],
           n: int = 2700, source: str = "photo") -> dict:
    """One report['evaluations'] entry with the keys run_bias_suite writes (evaluation/bias.py)."""
    per = {g: {"accuracy": a, "n": n // len(groups)} for g, a in groups.items()}
    worst = min(per, key=lambda g: (per[g]["accuracy"], g))
    observed, expected, p95 = deficit
    return {
        "model": model.split("[")[0], "input_type": "cutouts" if source != "photo" else "images", "source": source,
        "source_description": "the variant photo", "checkpoint": f"models/best_model_{model}.pth", "debias": None,
        "n": n, "accuracy": acc, "bg_gap": acc["mixed_same"] - acc["mixed_rand"],
        "bg_only_accuracy": {"no_fg": acc["no_fg"], "only_bg_t": acc["only_bg_t"]},
        "gradcam_inside": {"mean": cam, "n": 16, "median": cam,
                           "histogram": {"edges": [i / 10 for i in range(11)], "counts": [16] + [0] * 9}},
        "groups": per, "worst_group": {"group": worst, "accuracy": per[worst]["accuracy"], "n": per[worst]["n"]},
        "worst_group_noise": {"pooled": acc["original"], "observed_deficit": observed, "expected_deficit": expected,
                              "null_deficit_p95": p95, "excess_deficit": observed - p95, "worst_group": worst,
                              "worst_ci": [0.0, 0.04], "level": 0.95, "homogeneity_p": 1e-7, "n_groups": len(per),
                              "min_n": n // len(groups)},
        "mean_group_accuracy": float(np.mean(list(groups.values()))),
        "home_vs_other": {"home": 0.711, "other": 0.149, "gap": 0.562, "n_home_groups": 3, "n_other_groups": 6,
                          "null": {"observed": 0.562, "null_mean": 0.0, "null_sd": 0.2, "null_low": -0.3,
                                   "null_high": 0.3, "level": 0.95, "p_value": 0.004, "p_bias": 0.002,
                                   "p_anti": 0.998, "n_assignments": 1680, "exact": True}},
        "mixed_rand_by_donor": {"groups": per, "home_vs_other": {"home": 0.7, "other": 0.15, "gap": 0.554,
                                                                 "n_home_groups": 3, "n_other_groups": 6},
                                "null": {"null_low": -0.2, "null_high": 0.2, "p_bias": 0.002, "p_anti": 0.998}},
        "mixed_rand_by_cell": None,
    }


def _acc(*values: float) -> dict[str, float]:
    return dict(zip(VARIANTS, values, strict=True))


def realistic_report() -> dict:
    """report.json as `evbattery bias` writes it, with the AMX run's numbers (docs/bias-study.md, ρ = 0.9)."""
    groups = [f"{c}/{f}" for c in CLASSES for f in FAMILIES]
    shortcut = dict(zip(groups, [0.0, 0.9, 0.2, 0.1, 0.5, 0.3, 0.2, 0.5, 0.3], strict=True))
    blind = dict(zip(groups, [0.79, 0.92, 0.95, 0.9, 0.93, 0.94, 0.91, 0.92, 0.9], strict=True))
    debiased = dict(zip(groups, [0.93, 0.9, 0.91, 0.95, 0.75, 0.94, 0.91, 0.92, 0.94], strict=True))
    evals = {
        "images": _entry("images", _acc(0.336, 0.40, 0.30, 0.31, 0.707, 0.339, 0.229), shortcut, 0.065,
                         (0.336, 0.162, 0.206)),
        "cutouts[true]": _entry("cutouts[true]", _acc(*[0.907] * 7), blind, 0.176, (0.117, 0.113, 0.157),
                                source="true"),
        "images_debiased": _entry("images_debiased", _acc(0.906, 0.85, 0.2, 0.3, 0.918, 0.911, 0.904), debiased,
                                  0.284, (0.156, 0.090, 0.126)),
    }
    return {"split": "test", "data_dir": "data/processed", "model_dir": "models", "seed": 0, "n_images": 2700,
            "classes": CLASSES, "variants": VARIANTS, "evaluations": evals, "agreement_original": [],
            "segmenter_iou_original": None, "families": FAMILIES,
            "mixed_partner_rule": "home families from the dataset card (a background belongs to the class whose "
                                  "home family it is)",
            "notes": [], "figures": ["accuracy_by_variant.png", "examples_gradcam.png"]}


def test_background_reliant_model_gets_relies_with_its_numbers() -> None:
    v = {x.model: x for x in bs.model_verdicts(realistic_report())}["images"]
    assert v.level == bs.RELIES and v.tone == "error" and not v.within_noise
    assert v.sentence.startswith("relies on the background: 70.7 % with its class's home background behind the "
                                 "cell, 33.9 % on random ones (BG-Gap +36.8")
    assert "worst group cylindrical/concrete 0.0 %, 33.6 points under the mean (sampling alone: up to 20.6)" \
        in v.sentence
    assert "Grad-CAM puts 6.5 % of its weight inside the cell" in v.sentence
    assert v.bg_gap == pytest.approx(36.8)
    lo, hi = v.interval
    assert 30 < lo < 36.8 < hi < 42  # n = 2700: about ±2.6 points


def test_model_with_no_gap_gets_little() -> None:
    by = {x.model: x for x in bs.model_verdicts(realistic_report())}
    assert [by[m].level for m in ("cutouts[true]", "images_debiased")] == [bs.LITTLE, bs.LITTLE]
    assert by["cutouts[true]"].tone == "success" and by["cutouts[true]"].bg_gap == pytest.approx(0.0)
    assert by["cutouts[true]"].sentence.startswith("little background reliance: 90.7 % with its class's home "
                                                   "background behind the cell, 90.7 % on random ones (BG-Gap +0.0")
    assert "worst group pouch/grey tray 75.0 %" in by["images_debiased"].sentence


@pytest.mark.parametrize(("gap", "interval", "level", "noisy"), [
    (7.3, None, bs.RELIES, False), (-8.0, (-12.0, -4.0), bs.RELIES, False), (5.0, (1.0, 9.0), bs.SOME, False),
    (2.9, (1.0, 4.8), bs.LITTLE, False), (10.0, (-2.0, 22.0), bs.SOME, True), (5.0, (-1.0, 11.0), bs.LITTLE, True),
    (1.0, (-3.0, 5.0), bs.LITTLE, True),
])
def test_levels_follow_the_thresholds_and_the_interval(gap, interval, level, noisy) -> None:
    assert bs.level_of(gap, interval) == (level, noisy)


def test_small_sample_gap_is_called_within_noise() -> None:
    report = realistic_report()
    e = report["evaluations"]["images"]
    e["n"], e["accuracy"]["mixed_same"], e["accuracy"]["mixed_rand"] = 6, 0.5, 0.333333
    v = bs.verdict("images", e, report)
    assert v.within_noise and v.level == bs.SOME  # a 16.7-point gap on 6 photos: one level down
    assert "within sampling noise at n = 6" in v.sentence


def test_anti_bias_is_said() -> None:
    report = realistic_report()
    e = report["evaluations"]["images_debiased"]
    e["accuracy"]["mixed_same"], e["accuracy"]["mixed_rand"] = 0.638, 0.693
    v = bs.verdict("images_debiased", e, report)
    assert v.level == bs.SOME and "worse on its class's own kind of background" in v.sentence


def test_gap_interval_is_agresti_caffo() -> None:
    lo, hi = bs.gap_interval(1.0, 1.0, 6)  # degenerate shares still give a width
    assert lo < 0 < hi and hi == pytest.approx(-lo)
    lo, hi = bs.gap_interval(0.5, 0.5, 10_000)
    assert hi == pytest.approx(1.386, abs=0.01)  # 1.96 * sqrt(2 * 0.25 / 10002) * 100


def test_missing_keys_give_a_sentence_not_an_exception() -> None:
    assert bs.model_verdicts(None) == [] and bs.model_verdicts({"bg_gap": {"images": 26.0}}) == []
    assert bs.model_verdicts({"evaluations": ["not", "a", "dict"]}) == []
    old = {"evaluations": {"empty": {}, "gap_only": {"bg_gap": 0.12}, "half": {"accuracy": {"mixed_same": None,
                                                                                          "mixed_rand": 0.5}},
                           "no_groups": {"accuracy": {"mixed_same": 0.9, "mixed_rand": 0.88}},
                           "odd": {"accuracy": "?", "worst_group": None, "gradcam_inside": {"mean": None},
                                   "n": True, "worst_group_noise": "x"},
                           "no_n": {"n": 0, "accuracy": {"mixed_same": 1.5, "mixed_rand": -0.2}}}}
    by = {v.model: v for v in bs.model_verdicts(old)}
    assert by["empty"].level == bs.NO_VERDICT and by["empty"].tone == "info"
    assert "run `evbattery bias` again" in by["empty"].sentence
    assert by["half"].level == by["odd"].level == bs.NO_VERDICT
    assert by["gap_only"].level == bs.RELIES and "BG-Gap +12.0 points" in by["gap_only"].sentence
    assert by["gap_only"].interval is None and by["no_n"].interval is None
    assert by["no_groups"].level == bs.LITTLE and "worst group" not in by["no_groups"].sentence
    assert "on backgrounds from photos of its own class" in by["no_groups"].sentence  # no partner rule recorded
    for table in (bs.variant_table, bs.group_table, bs.home_other_table, bs.accuracy_chart):
        table(old)
        table({})


def test_tables_in_percent() -> None:
    report = realistic_report()
    rows = {r["model"]: r for r in bs.variant_table(report)}
    assert list(rows) == ["images", "cutouts[true]", "images_debiased"]
    assert rows["images"]["Mixed-Same"] == 70.7 and rows["images"]["BG-Gap"] == 36.8
    assert rows["images"]["worst group"] == "0.0 (cylindrical/concrete)" and rows["images"]["verdict"] == bs.RELIES
    groups = bs.group_table(report)
    assert len(groups) == 9 and groups[0] == {"group": "cylindrical/concrete", "n": 300, "images": 0.0,
                                              "cutouts[true]": 79.0, "images_debiased": 93.0}
    home = bs.home_other_table(report)
    assert {r["groups by"] for r in home} == {"Original", "Mixed-Rand by donor"}
    assert home[0]["gap"] == 56.2 and home[0]["p bias"] == 0.002 and home[0]["by chance"] == "-30.0 … 30.0"
    chart = bs.accuracy_chart(report)
    assert list(chart["images"]) == ["Original", "Only-FG", "No-FG", "Only-BG-T", "Mixed-Same", "Mixed-Rand",
                                     "Mixed-Next"]


def test_figures_that_exist(tmp_path: Path) -> None:
    report = realistic_report()
    assert bs.headline_figures(tmp_path, report) == [] and bs.other_figures(tmp_path, report) == []
    for name in ("accuracy_by_variant.png", "examples_gradcam.png", "another.png"):
        save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / name)
    assert bs.headline_figures(tmp_path, report) == [tmp_path / "accuracy_by_variant.png"]
    assert bs.headline_figures(tmp_path, None) == [tmp_path / "accuracy_by_variant.png"]
    assert bs.other_figures(tmp_path, report) == [tmp_path / "examples_gradcam.png", tmp_path / "another.png"]


def test_report_survives_a_json_round_trip() -> None:
    report = json.loads(json.dumps(realistic_report()))
    assert [v.level for v in bs.model_verdicts(report)] == [bs.RELIES, bs.LITTLE, bs.LITTLE]
    assert bs.model_verdicts(copy.deepcopy(report)) == bs.model_verdicts(report)

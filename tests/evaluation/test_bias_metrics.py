"""BG-Gap, group / worst-group accuracy, agreement and Grad-CAM energy share on hand-made numbers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from evbattery.evaluation.bias import bg_gap, group_accuracy, worst_group
from evbattery.evaluation.bias_metrics import (
    accuracy,
    home_gap_null,
    home_vs_other,
    pairwise_agreement,
    share_histogram,
    worst_group_noise,
)
from evbattery.inference.gradcam import energy_inside


def test_bg_gap_is_mixed_same_minus_mixed_rand() -> None:
    assert bg_gap({"mixed_same": 0.9, "mixed_rand": 0.6, "original": 1.0}) == pytest.approx(0.3)
    assert bg_gap({"mixed_same": 0.5, "mixed_rand": 0.75}) == pytest.approx(-0.25)


def test_accuracy_counts_matches_and_rejects_length_mismatch() -> None:
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])


def test_group_and_worst_group_accuracy() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    preds = [0, 0, 0, 1, 1, 0, 0, 0]
    groups = ["a|wood", "a|wood", "a|metal", "a|metal", "b|wood", "b|wood", "b|metal", "b|metal"]
    per = group_accuracy(labels, preds, groups)
    assert per == {"a|metal": {"accuracy": 0.5, "n": 2}, "a|wood": {"accuracy": 1.0, "n": 2},
                   "b|metal": {"accuracy": 0.0, "n": 2}, "b|wood": {"accuracy": 0.5, "n": 2}}
    assert worst_group(per) == {"group": "b|metal", "accuracy": 0.0, "n": 2}
    # Average accuracy 0.5 hides a group at 0: the Waterbirds point.
    assert accuracy(labels, preds) == 0.5


def test_worst_group_ties_and_min_n() -> None:
    per = {"z": {"accuracy": 0.2, "n": 5}, "a": {"accuracy": 0.2, "n": 5}, "tiny": {"accuracy": 0.0, "n": 1}}
    assert worst_group(per, min_n=2)["group"] == "a"
    assert worst_group(per)["group"] == "tiny"
    assert worst_group({}, min_n=1) is None


def test_worst_group_noise_matches_simulation_of_equal_groups() -> None:
    # 26 groups at 33/34 and one at 31/34: the law of the minimum of 27 Binomial(34, p) draws, computed
    # exactly, must agree with a large simulation of that null.
    per = {f"g{i:02d}": {"accuracy": 33 / 34, "n": 34} for i in range(26)} | {"hard": {"accuracy": 31 / 34, "n": 34}}
    w = worst_group_noise(per)
    p = (26 * 33 + 31) / (27 * 34)
    assert w["pooled"] == pytest.approx(p)
    assert w["worst_group"] == "hard" and w["observed_deficit"] == pytest.approx(p - 31 / 34)
    mins = np.random.default_rng(0).binomial(34, p, size=(200_000, 27)).min(axis=1) / 34
    assert w["expected_deficit"] == pytest.approx(p - mins.mean(), abs=1e-3)
    assert w["null_deficit_p95"] == pytest.approx(p - np.quantile(mins, 0.05), abs=1 / 34 + 1e-9)
    # A 97 % model with 34 photos per group is expected ~7 points under its mean in its worst group by chance,
    # so a 5-point worst-group criterion cannot be read at this group size; this one is within chance.
    assert 0.06 < w["expected_deficit"] < 0.08 and w["excess_deficit"] < 0
    assert w["homogeneity_p"] > 0.5
    lo, hi = w["worst_ci"]
    assert lo < 31 / 34 < hi


def test_worst_group_noise_flags_a_real_weak_group() -> None:
    per = {f"g{i}": {"accuracy": 0.95, "n": 200} for i in range(8)} | {"weak": {"accuracy": 0.6, "n": 200}}
    w = worst_group_noise(per)
    assert w["worst_group"] == "weak" and w["excess_deficit"] > 0.2
    assert w["homogeneity_p"] < 1e-6 and w["worst_ci"][1] < 0.7
    # Unequal group sizes are handled, and a perfect model has no deficit and nothing to test.
    perfect = worst_group_noise({"a": {"accuracy": 1.0, "n": 10}, "b": {"accuracy": 1.0, "n": 3}})
    assert perfect["observed_deficit"] == 0 and perfect["expected_deficit"] == 0 and perfect["homogeneity_p"] == 1.0
    assert worst_group_noise({"only": {"accuracy": 0.5, "n": 4}}) is None


def test_worst_group_noise_compares_groups_within_their_class() -> None:
    # A class the model finds harder is not a background effect: families alike within each class pass,
    # although the hard class's groups sit 18 points under the easy one's.
    per = {f"{c}/{f}": {"accuracy": a, "n": 200} for c, a in (("hard", 0.80), ("easy", 0.98)) for f in "xyz"}
    w = worst_group_noise(per)
    assert w["pooled"] == pytest.approx(0.89) and w["observed_deficit"] == pytest.approx(0.09)
    assert w["homogeneity_p"] == pytest.approx(1.0) and w["excess_deficit"] < 0.02
    # The same spread between families of one class is flagged.
    mixed = {"hard/x": {"accuracy": 0.80, "n": 200}, "hard/y": {"accuracy": 0.98, "n": 200},
             "easy/x": {"accuracy": 0.98, "n": 200}, "easy/y": {"accuracy": 0.98, "n": 200}}
    assert worst_group_noise(mixed)["homogeneity_p"] < 1e-6 and worst_group_noise(mixed)["excess_deficit"] > 0.03


def test_pairwise_agreement_says_who_is_wrong() -> None:
    labels = [0, 1, 2, 0, 1]
    preds = {"images": [0, 2, 2, 1, 0], "cutouts[true]": [0, 1, 2, 2, 2]}
    (pair,) = pairwise_agreement(labels, preds)
    assert pair["a"] == "images" and pair["b"] == "cutouts[true]"
    assert pair["agreement"] == pytest.approx(0.4)
    assert (pair["disagreements"], pair["a_wrong"], pair["b_wrong"], pair["both_wrong"]) == (3, 1, 0, 2)
    assert pair["a_wrong_share"] == pytest.approx(1 / 3)


def test_pairwise_agreement_counts_each_kind_of_disagreement_once() -> None:
    """Photo 1: only a wrong; photos 2, 3: only b wrong; photo 4: both wrong, differently; photo 0: agree."""
    labels = [0, 1, 2, 0, 1]
    (pair,) = pairwise_agreement(labels, {"a": [0, 0, 2, 0, 0], "b": [0, 1, 0, 1, 2]})
    assert pair["n"] == 5 and pair["agreement"] == pytest.approx(0.2)
    assert (pair["disagreements"], pair["a_wrong"], pair["b_wrong"], pair["both_wrong"]) == (4, 1, 2, 1)
    assert (pair["a_wrong_share"], pair["b_wrong_share"], pair["both_wrong_share"]) == (0.25, 0.5, 0.25)


def test_pairwise_agreement_of_no_photos_is_nan_quietly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice"
        (pair,) = pairwise_agreement([], {"a": [], "b": []})
    assert pair["n"] == 0 and np.isnan(pair["agreement"]) and np.isnan(pair["a_wrong_share"])


def test_pairwise_agreement_covers_every_pair() -> None:
    preds = {k: [0, 1] for k in ("images", "cutouts[true]", "cutouts[pred]", "images_debiased")}
    pairs = pairwise_agreement([0, 1], preds)
    assert len(pairs) == 6 and all(p["agreement"] == 1.0 and math.isnan(p["a_wrong_share"]) for p in pairs)


def test_energy_share_is_one_inside_and_zero_outside() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    inside = np.zeros((8, 8), np.float32)
    inside[3, 3], inside[2, 4] = 1.0, 0.5
    outside = np.zeros((8, 8), np.float32)
    outside[7, 7] = 1.0
    assert energy_inside(inside, mask) == 1.0
    assert energy_inside(outside, mask) == 0.0
    assert energy_inside(inside + outside, mask) == pytest.approx(1.5 / 2.5)


def test_share_histogram_drops_nan_and_counts_edges() -> None:
    h = share_histogram([0.0, 0.05, 0.95, 1.0, float("nan")], bins=10)
    assert h["counts"] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2] and h["edges"][0] == 0.0 and h["edges"][-1] == 1.0


def test_share_histogram_spans_zero_to_one_whatever_the_values() -> None:
    """Ten bins over [0, 1] by default, even when every share sits in one corner (the bias card compares models
    bin for bin); edges rounded to 4 digits, not to integers."""
    h = share_histogram([0.32, 0.35, float("nan")])
    assert h["edges"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert h["counts"] == [0, 0, 0, 2, 0, 0, 0, 0, 0, 0]
    thirds = share_histogram([0.5], bins=3)
    assert thirds == {"edges": [0.0, 0.3333, 0.6667, 1.0], "counts": [0, 1, 0]}


def test_home_vs_other_reads_a_background_shortcut() -> None:
    # pouch's home is wood: a shortcut model is right on pouch/wood and cylindrical/metal, wrong elsewhere.
    per = {"pouch/wood": {"accuracy": 1.0, "n": 4}, "pouch/metal": {"accuracy": 0.25, "n": 4},
           "cylindrical/metal": {"accuracy": 0.75, "n": 4}, "cylindrical/wood": {"accuracy": 0.0, "n": 4}}
    homes = {"pouch": ["wood"], "cylindrical": ["metal"]}
    split = home_vs_other(per, homes)
    assert split == {"home": 0.875, "other": 0.125, "gap": 0.75, "n_home_groups": 2, "n_other_groups": 2}
    # Without home groups (or without other groups) there is nothing to compare.
    assert home_vs_other(per, {}) is None
    assert home_vs_other({"pouch/wood": per["pouch/wood"]}, homes) is None


def test_home_gap_null_enumerates_assignments_by_hand() -> None:
    """2 classes x 4 families, homes A:{w,x}, B:{y,z}; home groups 0.9, others 0.5. Of the 6 assignments
    (A takes 2 of 4 families, B the rest) the card's gives +0.4, its mirror (A:{y,z}) -0.4, the four mixed
    ones 0: p two-sided 2/6, p_bias 1/6, sd sqrt(0.32/6)."""
    homes = {"A": ["w", "x"], "B": ["y", "z"]}
    per = {f"{c}/{f}": {"accuracy": 0.9 if f in homes[c] else 0.5, "n": 10} for c in "AB" for f in "wxyz"}
    null = home_gap_null(per, homes)
    assert null["observed"] == pytest.approx(0.4) == pytest.approx(home_vs_other(per, homes)["gap"])
    assert null["n_assignments"] == 6 and null["exact"]
    assert null["p_value"] == pytest.approx(2 / 6) and null["p_bias"] == pytest.approx(1 / 6)
    assert null["p_anti"] == pytest.approx(1.0)
    assert null["null_mean"] == pytest.approx(0.0, abs=1e-12)
    assert null["null_sd"] == pytest.approx(math.sqrt(0.32 / 6))


def test_home_gap_null_separates_a_shortcut_from_class_and_family_effects() -> None:
    """9 families, 3 per class (1,680 assignments). Class and family main effects alone give the same gap
    under every assignment (each family is home to exactly one class), so they are never mistaken for
    bias; interaction noise spreads the null; a home boost on top stands out as the one extreme."""
    rng = np.random.default_rng(0)
    classes, fams = ["c0", "c1", "c2"], [f"f{j}" for j in range(9)]
    homes = {c: fams[3 * i:3 * i + 3] for i, c in enumerate(classes)}
    main = {(c, f): 0.6 + 0.1 * i + 0.02 * j for i, c in enumerate(classes) for j, f in enumerate(fams)}
    additive = {f"{c}/{f}": {"accuracy": v, "n": 50} for (c, f), v in main.items()}
    null = home_gap_null(additive, homes)
    assert null["n_assignments"] == 1680 and null["exact"]
    assert null["null_sd"] == pytest.approx(0.0, abs=1e-12) and null["p_value"] == 1.0

    noise = {(c, f): v + rng.normal(0, 0.08) for (c, f), v in main.items()}
    noisy = {f"{c}/{f}": {"accuracy": v, "n": 50} for (c, f), v in noise.items()}
    null = home_gap_null(noisy, homes)
    assert 0.02 < null["null_sd"] < 0.06 and null["p_value"] > 0.05  # interactions, no bias

    boosted = {f"{c}/{f}": {"accuracy": v + (0.3 if f in homes[c] else 0.0), "n": 50} for (c, f), v in noise.items()}
    null = home_gap_null(boosted, homes)
    assert null["p_bias"] == pytest.approx(1 / 1680) and null["p_value"] < 0.01 and null["p_anti"] == 1.0
    anti = {f"{c}/{f}": {"accuracy": v - (0.3 if f in homes[c] else 0.0), "n": 50} for (c, f), v in noise.items()}
    assert home_gap_null(anti, homes)["p_anti"] == pytest.approx(1 / 1680)

    assert home_gap_null(noisy, {}) is None
    assert home_gap_null(noisy, {"c0": fams[:2], "c1": fams[1:3]}) is None  # a home family shared
    # Too many assignments to enumerate: a seeded sample of them instead.
    sampled = home_gap_null(boosted, homes, max_exact=100, draws=2000)
    assert not sampled["exact"] and sampled["n_assignments"] == 2000 and sampled["p_bias"] < 0.01

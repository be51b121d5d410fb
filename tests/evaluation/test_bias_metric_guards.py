"""Edges of the bias statistics that mutation testing showed unguarded (docs/mutation.md), on numbers small
enough to check by hand."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from evbattery.evaluation.bias import mixed_rand_family_split
from evbattery.evaluation.bias_metrics import home_gap_null, home_vs_other, worst_group_noise


def four_photos(home_families: dict | None = None, families: list | None = None) -> SimpleNamespace:
    """Photos 0: x on a, 1: x on b, 2: y on a, 3: y on b; home families x: a, y: b."""
    homes = {"x": ["a"], "y": ["b"]} if home_families is None else home_families
    return SimpleNamespace(classes=("x", "y"), labels=np.array([0, 0, 1, 1]),
                           families=families or ["a", "b", "a", "b"], home_families=homes)


# right on photos 0 and 3 only (the cells cut from a home-family photo)
PREDS = np.array([0, 1, 0, 1])
DONORS = np.array([1, 0, 3, 2])  # donor families b, a, b, a: every right answer sits on an *other* background


def test_mixed_rand_split_groups_by_donor_by_default_and_by_cell_on_request() -> None:
    data = four_photos()
    by_donor = mixed_rand_family_split(data, DONORS, PREDS)
    assert by_donor["groups"] == {"x/a": {"accuracy": 0.0, "n": 1}, "x/b": {"accuracy": 1.0, "n": 1},
                                  "y/a": {"accuracy": 1.0, "n": 1}, "y/b": {"accuracy": 0.0, "n": 1}}
    assert by_donor["home_vs_other"] == {"home": 0.0, "other": 1.0, "gap": -1.0, "n_home_groups": 2,
                                         "n_other_groups": 2}
    assert by_donor["null"]["observed"] == -1.0 and by_donor["null"]["n_assignments"] == 2
    assert mixed_rand_family_split(data, DONORS, PREDS, "donor") == by_donor

    by_cell = mixed_rand_family_split(data, DONORS, PREDS, "cell")
    assert by_cell["groups"] == {"x/a": {"accuracy": 1.0, "n": 1}, "x/b": {"accuracy": 0.0, "n": 1},
                                 "y/a": {"accuracy": 0.0, "n": 1}, "y/b": {"accuracy": 1.0, "n": 1}}
    assert by_cell["home_vs_other"]["gap"] == 1.0 and by_cell["null"]["observed"] == 1.0


def test_mixed_rand_split_needs_home_families_and_known_families() -> None:
    assert mixed_rand_family_split(four_photos(home_families={}), DONORS, PREDS) is None
    unknown = four_photos(families=["a", None, "a", "b"])
    assert mixed_rand_family_split(unknown, DONORS, PREDS, "cell") is None
    assert mixed_rand_family_split(unknown, DONORS, PREDS, "donor") is None  # photo 1 donates to photo 0
    with pytest.raises(ValueError, match="donor or cell"):
        mixed_rand_family_split(four_photos(), DONORS, PREDS, "photo")


def two_by_four() -> tuple[dict, dict]:
    """2 classes x 4 families, homes A: {w, x}, B: {y, z}; home groups 0.9, others 0.5 (6 assignments)."""
    homes = {"A": ["w", "x"], "B": ["y", "z"]}
    per = {f"{c}/{f}": {"accuracy": 0.9 if f in homes[c] else 0.5, "n": 10} for c in "AB" for f in "wxyz"}
    return per, homes


def test_home_split_reads_a_family_name_with_a_slash_as_one_family() -> None:
    """Class names are folder names (no '/'); the family is everything after the first '/'."""
    per = {"pouch/wood/dark": {"accuracy": 1.0, "n": 4}, "pouch/metal": {"accuracy": 0.25, "n": 4},
           "cylindrical/metal": {"accuracy": 0.75, "n": 4}, "cylindrical/wood/dark": {"accuracy": 0.0, "n": 4}}
    homes = {"pouch": ["wood/dark"], "cylindrical": ["metal"]}
    assert home_vs_other(per, homes)["gap"] == 0.75
    null = home_gap_null(per, homes)
    assert null["observed"] == pytest.approx(0.75) and null["n_assignments"] == 2


def test_home_gap_null_ignores_empty_groups_and_names_without_a_family() -> None:
    per, homes = two_by_four()
    ref = home_gap_null(per, homes)
    assert ref["observed"] == pytest.approx(0.4) and ref["n_assignments"] == 6
    noisy = {**per, "A/v": {"accuracy": 0.0, "n": 0}, "pooled": {"accuracy": 0.0, "n": 80}}
    assert home_gap_null(noisy, homes) == ref
    # groups of one photo count; groups without "n" count as present
    assert home_gap_null({k: {**g, "n": 1} for k, g in per.items()}, homes) == ref
    assert home_gap_null({k: {"accuracy": g["accuracy"]} for k, g in per.items()}, homes) == ref


def test_home_gap_null_with_a_missing_group() -> None:
    per, homes = two_by_four()
    del per["B/w"]  # an other-group: the card's gap is 0.9 - mean(0.5, 0.5, 0.5) = 0.4 still
    null = home_gap_null(per, homes)
    assert null["observed"] == pytest.approx(0.4) and null["n_assignments"] == 6


def test_home_gap_null_is_none_quietly_when_every_present_group_is_home() -> None:
    per = {"A/w": {"accuracy": 1.0, "n": 3}, "B/x": {"accuracy": 0.5, "n": 3}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" on the way
        assert home_gap_null(per, {"A": ["w"], "B": ["x"]}) is None


def test_home_gap_null_samples_a_reproducible_twenty_thousand_assignments_by_default() -> None:
    """3 classes x 18 families, 3 home families each: 81.7 million assignments, too many to enumerate."""
    rng = np.random.default_rng(0)
    fams = [f"f{j:02d}" for j in range(18)]
    homes = {c: fams[3 * i:3 * i + 3] for i, c in enumerate(("c0", "c1", "c2"))}
    per = {f"{c}/{f}": {"accuracy": float(rng.uniform(0.5, 1.0)), "n": 10} for c in homes for f in fams}
    null = home_gap_null(per, homes)
    assert not null["exact"] and null["n_assignments"] == 20_000
    assert home_gap_null(per, homes, seed=0) == null
    assert home_gap_null(per, homes, seed=1)["null_mean"] != null["null_mean"]


def test_home_gap_null_interval_and_exact_boundary() -> None:
    """The 6 gaps are -0.4, 0, 0, 0, 0, 0.4: the central 95 % runs from -0.35 to 0.35 (linear interpolation),
    and 6 assignments with max_exact=6 are still enumerated."""
    per, homes = two_by_four()
    null = home_gap_null(per, homes, max_exact=6)
    assert null["exact"] and null["n_assignments"] == 6
    assert null["null_low"] == pytest.approx(-0.35) and null["null_high"] == pytest.approx(0.35)
    assert null["level"] == 0.95
    assert not home_gap_null(per, homes, max_exact=5, draws=50)["exact"]


def nine_families(boost: float) -> tuple[dict, dict]:
    """3 classes x 9 families (1,680 assignments); class and family main effects plus `boost` on home groups."""
    classes, fams = ["c0", "c1", "c2"], [f"f{j}" for j in range(9)]
    homes = {c: fams[3 * i:3 * i + 3] for i, c in enumerate(classes)}
    per = {f"{c}/{f}": {"accuracy": 0.5 + 0.1 * i + 0.02 * j + (boost if f in homes[c] else 0.0), "n": 50}
           for i, c in enumerate(classes) for j, f in enumerate(fams)}
    return per, homes


def test_sampled_assignments_are_whole_disjoint_assignments() -> None:
    """Main effects alone give the same gap under every disjoint assignment of 3 families to each class, so a
    sample of them has no spread, and every draw is as extreme as the card's: p = (N + 1) / (N + 1) = 1."""
    per, homes = nine_families(0.0)
    null = home_gap_null(per, homes, max_exact=100, draws=300)
    assert not null["exact"] and null["n_assignments"] == 300
    assert null["null_sd"] == pytest.approx(0.0, abs=1e-12)
    assert null["p_value"] == null["p_bias"] == null["p_anti"] == 1.0


def test_a_sampled_p_value_counts_the_card_once_more_and_is_never_zero() -> None:
    """A home boost the sampled assignments never reach (none of 100 draws is the card's, 1 in 1,680 each):
    p = (0 + 1) / (100 + 1), not 0."""
    per, homes = nine_families(0.3)
    null = home_gap_null(per, homes, max_exact=100, draws=100)
    assert null["p_bias"] == pytest.approx(1 / 101) and null["p_value"] == pytest.approx(1 / 101)
    assert null["p_anti"] == 1.0


def test_home_gap_null_is_none_when_the_cards_own_home_groups_are_missing() -> None:
    """Other assignments have home groups to compare, but the card's home groups (A/w, B/x) were never seen."""
    per = {"A/x": {"accuracy": 1.0, "n": 3}, "B/w": {"accuracy": 0.5, "n": 3}, "A/y": {"accuracy": 0.2, "n": 3}}
    assert home_gap_null(per, {"A": ["w"], "B": ["x"]}) is None


def test_worst_group_noise_ignores_empty_groups_and_counts_groups_of_one() -> None:
    per = {"x/a": {"accuracy": 0.8, "n": 10}, "x/b": {"accuracy": 0.0, "n": 1}}
    ref = worst_group_noise(per)
    assert ref["n_groups"] == 2 and ref["min_n"] == 1 and ref["worst_group"] == "x/b"
    assert worst_group_noise({**per, "x/c": {"accuracy": 0.0, "n": 0}}) == ref


def test_worst_group_noise_pools_by_class_even_when_a_family_has_a_slash() -> None:
    """'pouch/wood/dark' belongs to class pouch: renaming the family without the slash changes nothing."""
    per = {"pouch/wood/dark": {"accuracy": 0.5, "n": 10}, "pouch/metal": {"accuracy": 0.9, "n": 10},
           "cylindrical/wood/dark": {"accuracy": 1.0, "n": 10}, "cylindrical/metal": {"accuracy": 0.7, "n": 10}}
    flat = {k.replace("wood/dark", "wood-dark"): v for k, v in per.items()}
    a, b = worst_group_noise(per), worst_group_noise(flat)
    assert a["worst_group"] == "pouch/wood/dark"
    assert {k: v for k, v in a.items() if k != "worst_group"} == {k: v for k, v in b.items() if k != "worst_group"}


def test_a_perfect_model_has_no_null_deficit() -> None:
    """Every group right: the minimum is 1 for sure, so the quantile of the deficit is exactly 0."""
    null = worst_group_noise({"x/a": {"accuracy": 1.0, "n": 8}, "x/b": {"accuracy": 1.0, "n": 5}})
    assert null["null_deficit_p95"] == 0.0 and null["expected_deficit"] == pytest.approx(0.0, abs=1e-12)
    assert null["excess_deficit"] == 0.0


def _wilson(k: int, n: int, z: float) -> list[float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [(centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)]


def _chi2(table: list[list[int]]) -> float:
    """Pearson's statistic, no continuity correction."""
    t = np.array(table, float)
    expected = t.sum(1, keepdims=True) * t.sum(0, keepdims=True) / t.sum()
    return float(((t - expected) ** 2 / expected).sum())


def test_worst_group_noise_statistics_by_hand() -> None:
    """Worst group x/a (6 of 10, below x/c's 2 of 3 though it has more right); a Wilson interval at the asked
    level; homogeneity summed over the classes with errors to compare: x (3 groups) and y (one error in all),
    not z (one group)."""
    from scipy import stats

    per = {"x/a": {"accuracy": 0.6, "n": 10}, "x/b": {"accuracy": 0.9, "n": 10}, "x/c": {"accuracy": 2 / 3, "n": 3},
           "y/a": {"accuracy": 1.0, "n": 10}, "y/b": {"accuracy": 0.9, "n": 10}, "z/a": {"accuracy": 0.7, "n": 10}}
    null = worst_group_noise(per, level=0.9)
    assert null["worst_group"] == "x/a" and null["level"] == 0.9 and null["n_groups"] == 6
    assert null["worst_ci"] == pytest.approx(_wilson(6, 10, stats.norm.ppf(0.95)), abs=1e-9)
    chi = _chi2([[6, 4], [9, 1], [2, 1]]) + _chi2([[10, 0], [9, 1]])
    assert null["homogeneity_p"] == pytest.approx(float(stats.chi2.sf(chi, 3)))
    assert "null_deficit_p90" in null


def test_worst_group_ties_go_to_the_first_name() -> None:
    per = {"x/b": {"accuracy": 0.5, "n": 2}, "x/a": {"accuracy": 0.5, "n": 4}, "x/c": {"accuracy": 1.0, "n": 4}}
    assert worst_group_noise(per)["worst_group"] == "x/a"

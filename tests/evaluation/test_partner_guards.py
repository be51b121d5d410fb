"""Edge cases of the BG-Gap plumbing that mutation testing showed unguarded (docs/mutation.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from evbattery.evaluation.bias import build_variant, choose_partners
from evbattery.evaluation.bias_metrics import accuracy


def test_partners_follow_background_owners_and_fall_back_to_self() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    owners = np.array([0, 0, -1, -1, -1, -1])  # only class 0 owns a background (e.g. its home family)
    p = choose_partners(labels, 3, seed=0, bg_classes=owners)
    assert p["mixed_same"][0] == 1 and p["mixed_same"][1] == 0  # the other class-0-owned background
    assert list(p["mixed_same"][2:]) == [2, 3, 4, 5]  # no background of their own class: themselves
    assert list(p["mixed_next"][:2]) == [0, 1]  # no other class owns one: themselves, no StopIteration
    assert set(p["mixed_next"][2:]) <= {0, 1}  # classes 1 and 2: the next class that owns one is class 0
    assert all(p["mixed_rand"][i] != i for i in range(6))


def test_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown variant 'nope'; expected one of original, only_fg, no_fg, "
                                         r"only_bg_t, mixed_same, mixed_rand, mixed_next"):
        build_variant("nope", [], [], {})


def test_accuracy_of_nothing_is_nan_quietly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" on the way
        assert math.isnan(accuracy([], []))
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75

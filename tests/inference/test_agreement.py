"""The agreement summary: agree / disagree from the classes, and "unsure" before either when a model guesses."""

from __future__ import annotations

import pytest

from evbattery.inference.agreement import NOTE_AGREE, NOTE_DISAGREE, agreement, unsure_below
from evbattery.inference.predictor import Prediction

CLASSES = ("cylindrical", "pouch", "prismatic")


def pred(cls: str, p: float, model: str = "m") -> Prediction:
    rest = (1 - p) / 2
    probs = {c: (p if c == cls else rest) for c in CLASSES}
    return Prediction(cls, p, probs, model)


def test_confident_models_that_name_the_same_class_agree():
    s = agreement({"images": pred("pouch", 0.9), "cutouts": pred("pouch", 0.8)})
    assert (s["agree"], s["unsure"], s["note"], s["majority_class"]) == (True, [], NOTE_AGREE, "pouch")


def test_confident_models_that_differ_disagree():
    s = agreement({"images": pred("pouch", 0.9), "cutouts": pred("prismatic", 0.7)})
    assert (s["agree"], s["unsure"], s["note"]) == (False, [], NOTE_DISAGREE)
    assert s["votes"] == {"pouch": ["images"], "prismatic": ["cutouts"]}


def test_a_guess_is_never_reported_as_agreement():
    """The real-photo case: both models said prismatic, the cutout model with 38 %."""
    s = agreement({"images": pred("prismatic", 0.71), "cutouts": pred("prismatic", 0.38)})
    assert s["agree"] is True and s["unsure"] == ["cutouts"]
    assert s["note"].startswith("Unsure") and "cutouts 38% prismatic" in s["note"] and NOTE_AGREE not in s["note"]


@pytest.mark.parametrize(("n", "expected"), [(3, 0.5), (2, 0.625), (10, 0.325)])
def test_unsure_threshold_sits_a_quarter_of_the_way_from_chance_to_certainty(n, expected):
    assert unsure_below(n) == pytest.approx(expected)
    assert unsure_below(n) > 1 / n

"""Edges of the agreement note and the Classify banner that mutation testing showed unguarded (docs/mutation.md):
the unsure threshold itself, a one-class model, and the wording when several models are unsure."""

from __future__ import annotations

import pytest

from evbattery.inference.agreement import agreement, is_unsure, unsure_below
from evbattery.inference.predictor import Prediction
from evbattery.ui.results import verdict


def pred(cls: str, p: float, classes: tuple[str, ...] = ("cylindrical", "pouch", "prismatic")) -> Prediction:
    rest = (1 - p) / (len(classes) - 1) if len(classes) > 1 else 0.0
    return Prediction(cls, p, {c: (p if c == cls else rest) for c in classes}, "m")


def test_a_top_probability_exactly_at_the_threshold_is_not_unsure() -> None:
    # two classes: chance 0.5, threshold 0.5 + 0.25 x 0.5 = 0.625 (exact in binary)
    two = ("pouch", "prismatic")
    assert unsure_below(2) == 0.625
    assert not is_unsure(pred("pouch", 0.625, two))
    assert is_unsure(pred("pouch", 0.6249, two))


def test_a_one_class_model_has_chance_one() -> None:
    assert unsure_below(1) == 1.0
    assert unsure_below(0) == 1.0  # no classes: treated as one, no division by zero


def test_several_unsure_models_are_all_named_with_chance_in_the_note() -> None:
    s = agreement({"images": pred("pouch", 0.40), "cutouts": pred("prismatic", 0.38)})
    assert s["unsure"] == ["images", "cutouts"]
    assert s["note"] == ("Unsure – images 40% pouch, cutouts 38% prismatic: near chance (33%), so no conclusion "
                         "about the cell or the background; the photo may be unlike the training photos")


def test_the_banner_names_every_unsure_model() -> None:
    resp = {"results": {"images": {"predicted_class": "pouch", "confidence": 0.40, "probabilities": {}},
                        "cutouts": {"predicted_class": "prismatic", "confidence": 0.38, "probabilities": {}}},
            "agree": False, "unsure": ["images", "cutouts", "gone"], "note": ""}
    level, text = verdict(resp)
    assert level == "unsure"
    assert text.startswith("**Unsure:** Full image (40% pouch), Cutout (background removed) (38% prismatic) is close "
                           "to chance")


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_confident_answer_is_not_unsure(n: int) -> None:
    classes = tuple(f"c{i}" for i in range(n))
    assert not is_unsure(pred("c0", 0.9, classes)) and is_unsure(pred("c0", 1 / n + 0.01, classes))

"""`agreement` (inference/agreement.py) on fixed answers: agree / disagree from the classes, the majority and votes
the API and the predict CLI report, and "unsure" before either when a model guesses (its top probability near
chance). The edges here are those mutation testing showed unguarded (docs/mutation.md)."""

from __future__ import annotations

import pytest

from evbattery.inference.agreement import NOTE_AGREE, NOTE_DISAGREE, agreement, is_unsure, unsure_below
from evbattery.inference.predictor import Prediction

CLASSES = ("cylindrical", "pouch", "prismatic")


def pred(cls: str, p: float = 0.9, classes: tuple[str, ...] = CLASSES, model: str = "m",
         novelty: float | None = None) -> Prediction:
    rest = (1 - p) / (len(classes) - 1) if len(classes) > 1 else 0.0
    return Prediction(cls, p, {c: (p if c == cls else rest) for c in classes}, model, novelty=novelty)


def test_confident_models_that_name_the_same_class_agree() -> None:
    out = agreement({"images": pred("pouch", 0.9), "cutouts": pred("pouch", 0.8)})
    assert out == {"agree": True, "unsure": [], "unfamiliar": [], "note": NOTE_AGREE, "majority_class": "pouch",
                   "votes": {"pouch": ["images", "cutouts"]}}
    assert NOTE_AGREE == "Models agree"


def test_two_classes_disagree_and_the_majority_wins() -> None:
    out = agreement({"images": pred("pouch"), "cutouts": pred("prismatic", 0.7), "images_debiased": pred("prismatic")})
    assert (out["agree"], out["unsure"], out["note"]) == (False, [], NOTE_DISAGREE)
    assert NOTE_DISAGREE == "Models disagree – possible background bias"
    assert out["majority_class"] == "prismatic"
    assert out["votes"] == {"pouch": ["images"], "prismatic": ["cutouts", "images_debiased"]}


def test_a_tie_goes_to_the_first_answer_and_one_model_agrees_with_itself() -> None:
    tie = agreement({"images": pred("cylindrical"), "cutouts": pred("pouch")})
    assert tie["agree"] is False and tie["majority_class"] == "cylindrical"
    assert agreement({"cutouts": pred("pouch")})["agree"] is True
    assert agreement({}) == {"agree": True, "unsure": [], "unfamiliar": [], "note": NOTE_AGREE, "majority_class": None,
                             "votes": {}}


def test_a_guess_is_never_reported_as_agreement() -> None:
    """The real-photo case: both models said prismatic, the cutout model with 38 %."""
    s = agreement({"images": pred("prismatic", 0.71), "cutouts": pred("prismatic", 0.38)})
    assert s["agree"] is True and s["unsure"] == ["cutouts"]
    assert s["note"].startswith("Unsure") and "cutouts 38% prismatic" in s["note"] and NOTE_AGREE not in s["note"]


def test_several_unsure_models_are_all_named_with_chance_in_the_note() -> None:
    s = agreement({"images": pred("pouch", 0.40), "cutouts": pred("prismatic", 0.38)})
    assert s["unsure"] == ["images", "cutouts"]
    assert s["note"] == ("Unsure – images 40% pouch, cutouts 38% prismatic: near chance (33%), so no conclusion "
                         "about the cell or the background; the photo may be unlike the training photos")


@pytest.mark.parametrize(("n", "expected"), [(3, 0.5), (2, 0.625), (10, 0.325)])
def test_unsure_threshold_sits_a_quarter_of_the_way_from_chance_to_certainty(n: int, expected: float) -> None:
    assert unsure_below(n) == pytest.approx(expected)
    assert unsure_below(n) > 1 / n


def test_a_top_probability_exactly_at_the_threshold_is_not_unsure() -> None:
    # two classes: chance 0.5, threshold 0.5 + 0.25 x 0.5 = 0.625 (exact in binary)
    two = ("pouch", "prismatic")
    assert unsure_below(2) == 0.625
    assert not is_unsure(pred("pouch", 0.625, two))
    assert is_unsure(pred("pouch", 0.6249, two))


def test_a_one_class_model_has_chance_one() -> None:
    assert unsure_below(1) == 1.0
    assert unsure_below(0) == 1.0  # no classes: treated as one, no division by zero


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_confident_answer_is_not_unsure(n: int) -> None:
    classes = tuple(f"c{i}" for i in range(n))
    assert not is_unsure(pred("c0", 0.9, classes)) and is_unsure(pred("c0", 1 / n + 0.01, classes))


def test_sure_models_on_an_unfamiliar_photo_are_not_reported_as_agreeing() -> None:
    """The real-photo case the novelty score exists for: both models sure, both far from their training photos."""
    s = agreement({"images": pred("prismatic", 0.97, novelty=1.83), "cutouts": pred("prismatic", 0.91, novelty=1.0001)})
    assert s["agree"] is True and s["unsure"] == [] and s["unfamiliar"] == ["images", "cutouts"]
    assert s["note"].startswith("Unfamiliar photo") and "images 1.8, cutouts 1.0" in s["note"]
    assert "the agreement says little" in s["note"] and NOTE_AGREE not in s["note"]
    split = agreement({"images": pred("pouch", novelty=3.0), "cutouts": pred("prismatic", novelty=0.4)})
    assert split["unfamiliar"] == ["images"] and "the disagreement says little" in split["note"]
    assert NOTE_DISAGREE not in split["note"]


def test_novelty_at_or_under_one_or_unknown_changes_nothing() -> None:
    for novelty in (None, 0.2, 1.0):
        s = agreement({"images": pred("pouch", novelty=novelty), "cutouts": pred("pouch", novelty=novelty)})
        assert (s["unfamiliar"], s["note"]) == ([], NOTE_AGREE)
    assert pred("pouch", novelty=1.0).familiar is True and pred("pouch", novelty=1.01).familiar is False
    assert pred("pouch").familiar is None


def test_unsure_comes_first_and_says_the_photo_is_unfamiliar_when_it_is() -> None:
    s = agreement({"images": pred("pouch", 0.40, novelty=2.0), "cutouts": pred("pouch", 0.9, novelty=0.5)})
    assert s["unsure"] == ["images"] and s["unfamiliar"] == ["images"]
    assert s["note"].startswith("Unsure") and s["note"].endswith("the photo is unlike the training photos")
    plain = agreement({"images": pred("pouch", 0.40), "cutouts": pred("pouch", 0.9)})
    assert plain["note"].endswith("the photo may be unlike the training photos")

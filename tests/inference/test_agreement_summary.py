"""`agreement` (inference/agreement.py): the verdict, note, majority and votes the API and the predict CLI report, on fixed answers."""

from __future__ import annotations

from evbattery.inference.agreement import agreement
from evbattery.inference.predictor import Prediction


def _p(cls: str, name: str) -> Prediction:
    probs = {c: (0.9 if c == cls else 0.05) for c in ("cylindrical", "pouch", "prismatic")}
    return Prediction(cls, 0.9, probs, name)


def test_all_models_on_one_class_agree() -> None:
    out = agreement({"images": _p("pouch", "images"), "cutouts": _p("pouch", "cutouts")})
    assert out == {"agree": True, "unsure": [], "note": "Models agree", "majority_class": "pouch",
                   "votes": {"pouch": ["images", "cutouts"]}}


def test_two_classes_disagree_and_the_majority_wins() -> None:
    out = agreement({"images": _p("pouch", "images"), "cutouts": _p("prismatic", "cutouts"),
                     "images_debiased": _p("prismatic", "images_debiased")})
    assert out["agree"] is False
    assert out["note"] == "Models disagree – possible background bias"
    assert out["majority_class"] == "prismatic"
    assert out["votes"] == {"pouch": ["images"], "prismatic": ["cutouts", "images_debiased"]}


def test_a_tie_goes_to_the_first_answer_and_one_model_agrees_with_itself() -> None:
    tie = agreement({"images": _p("cylindrical", "images"), "cutouts": _p("pouch", "cutouts")})
    assert tie["agree"] is False and tie["majority_class"] == "cylindrical"
    assert agreement({"cutouts": _p("pouch", "cutouts")})["agree"] is True
    assert agreement({}) == {"agree": True, "unsure": [], "note": "Models agree", "majority_class": None,
                             "votes": {}}

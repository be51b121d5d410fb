"""What several models' answers for one photo add up to: do they agree, and can their answers be trusted.

The note never claims agreement for an answer a model is unsure of: a model whose top probability is close to
chance (1 / number of classes) is guessing, and two guesses that happen to match say nothing about the
background. Nor for a photo unlike the photos a model learned from (its novelty above 1, models/novelty.py):
there a model can be sure and wrong (models trained on synthetic photos answer real ones at 0.9-1.0 and are right
on about two of three). The API's `note`, `unsure` and `unfamiliar`, the predict CLI and the UI all come from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

NOTE_AGREE = "Models agree"
NOTE_DISAGREE = "Models disagree – possible background bias"
# A model is unsure when its top probability is below this share of the way from chance to certainty: with 3
# classes, below 0.33 + 0.25 x 0.67 = 0.50 (a 38 % answer is a guess, not an opinion).
UNSURE_MARGIN = 0.25


class Answer(Protocol):
    """What agreement needs from a model's prediction (inference.predictor.Prediction)."""

    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    novelty: float | None


def unsure_below(n_classes: int) -> float:
    """Top probability under which a model over n_classes counts as unsure."""
    chance = 1.0 / max(n_classes, 1)
    return chance + UNSURE_MARGIN * (1.0 - chance)


def is_unsure(p: Answer) -> bool:
    """True when the model's top probability is near chance."""
    return p.confidence < unsure_below(len(p.probabilities))


def is_unfamiliar(p: Answer) -> bool:
    """True when the photo lies further from the model's training photos than 99 % of held-out ones."""
    return p.novelty is not None and p.novelty > 1.0


def agreement(preds: Mapping[str, Answer]) -> dict[str, Any]:
    """{agree, unsure, unfamiliar, note, majority_class, votes} over several models' predictions for one photo.

    agree: every model names the same class. unsure: the models whose answer is near chance. unfamiliar: the
    models to which the photo is unlike their training photos. The note says "unsure", then "unfamiliar",
    before anything else, so agreement between guesses or between models out of their depth is never reported
    as agreement.
    """
    votes: dict[str, list[str]] = {}
    for name, p in preds.items():
        votes.setdefault(p.predicted_class, []).append(name)
    majority = max(votes, key=lambda c: len(votes[c])) if votes else None
    agree = len(votes) <= 1
    unsure = [name for name, p in preds.items() if is_unsure(p)]
    unfamiliar = [name for name, p in preds.items() if is_unfamiliar(p)]
    if unsure:
        detail = ", ".join(f"{n} {preds[n].confidence:.0%} {preds[n].predicted_class}" for n in unsure)
        n_classes = len(next(iter(preds.values())).probabilities)
        note = (f"Unsure – {detail}: near chance ({1 / n_classes:.0%}), so no conclusion about the cell or the "
                f"background; the photo {'is' if unfamiliar else 'may be'} unlike the training photos")
    elif unfamiliar:
        detail = ", ".join(f"{n} {preds[n].novelty:.1f}" for n in unfamiliar)
        note = (f"Unfamiliar photo – unlike the photos the models learned from (novelty {detail}; above 1 is further "
                f"than 99 % of held-out training-like photos), so a confident answer may still be wrong and "
                f"{'the agreement' if agree else 'the disagreement'} says little about the background: check by eye")
    else:
        note = NOTE_AGREE if agree else NOTE_DISAGREE
    return {"agree": agree, "unsure": unsure, "unfamiliar": unfamiliar, "note": note, "majority_class": majority,
            "votes": votes}

"""The Classify page's banner (ui/results.py `verdict`) on fixed API answers, no server: it follows the API's
agree / unsure answer, names every model's class, and never rewords a guess as agreement."""

from __future__ import annotations

from evbattery.ui.results import model_title, verdict


def _p(cls: str, confidence: float = 1.0) -> dict:
    return {"predicted_class": cls, "probabilities": {cls: confidence}, "confidence": confidence}


def _answer(preds: dict, agree: bool, mask_source: str = "uploaded", unsure: list[str] | None = None) -> dict:
    return {"results": preds, "agree": agree, "unsure": unsure or [], "mask_source": mask_source}


def test_same_class_is_agree_with_the_class_named() -> None:
    level, text = verdict(_answer({"images": _p("pouch"), "cutouts": _p("pouch")}, True))
    assert level == "agree"
    assert text.startswith("**The models agree: pouch.** ") and "disagree" not in text
    assert "background is unlikely to be driving" in text


def test_different_classes_are_disagree_with_every_vote_named() -> None:
    preds = {"images": _p("pouch"), "cutouts": _p("prismatic"), "images_debiased": _p("pouch")}
    level, text = verdict(_answer(preds, False))
    assert level == "disagree"
    assert text.startswith("**The models disagree:** Full image → **pouch**, Cutout (background removed) → "
                           "**prismatic**, Full image, debiased → **pouch**. ")
    assert "background bias" in text and "segmenter" not in text and "The models agree" not in text


def test_a_segmenter_mask_adds_a_caution_only_when_they_disagree() -> None:
    split = {"images": _p("pouch"), "cutouts": _p("prismatic")}
    level, text = verdict(_answer(split, False, "segmenter"))
    assert level == "disagree" and text.startswith("**The models disagree:** Full image → **pouch**")
    assert text.endswith(" The mask was predicted by the segmenter, so first check that the cutout shows the whole "
                         "cell.")
    assert "segmenter" not in verdict(_answer({"images": _p("pouch"), "cutouts": _p("pouch")}, True, "segmenter"))[1]


def test_unsure_wins_over_agreement() -> None:
    level, text = verdict(_answer({"images": _p("pouch", 0.9), "cutouts": _p("pouch", 0.38)}, True,
                                  unsure=["cutouts"]))
    assert level == "unsure" and "38%" in text and "agree" not in text.lower()


def test_the_banner_names_every_unsure_model() -> None:
    """An unsure name with no result ("gone") is skipped, not a KeyError."""
    resp = _answer({"images": _p("pouch", 0.40), "cutouts": _p("prismatic", 0.38)}, False,
                   unsure=["images", "cutouts", "gone"])
    level, text = verdict(resp)
    assert level == "unsure"
    assert text.startswith("**Unsure:** Full image (40% pouch), Cutout (background removed) (38% prismatic) is close "
                           "to chance")


def test_no_models_and_model_titles() -> None:
    assert verdict({"results": {}}) == ("none", "No model answered.")
    assert model_title("my_model") == "My model" and model_title("cutouts") == "Cutout (background removed)"


def test_an_unfamiliar_photo_is_never_reported_as_agreement() -> None:
    preds = {"images": {**_p("prismatic", 0.97), "novelty": 1.83}, "cutouts": {**_p("prismatic", 0.9), "novelty": 0.7}}
    level, text = verdict({**_answer(preds, True), "unfamiliar": ["images", "gone"]})
    assert level == "unfamiliar"
    assert text.startswith("**Unfamiliar photo:** it is unlike the photos the models learned from: Full image "
                           "(novelty 1.8); ")
    assert "they agree on **prismatic**" in text and "The models agree" not in text and "Cutout" not in text
    split = {"images": {**_p("pouch"), "novelty": 2.0}, "cutouts": {**_p("prismatic"), "novelty": 3.0}}
    level, text = verdict({**_answer(split, False), "unfamiliar": ["images", "cutouts"]})
    assert level == "unfamiliar" and "they disagree" in text and "Cutout (background removed) (novelty 3.0)" in text


def test_unsure_still_comes_before_unfamiliar() -> None:
    preds = {"images": {**_p("pouch", 0.4), "novelty": 2.0}, "cutouts": _p("pouch")}
    resp = {**_answer(preds, True, unsure=["images"]), "unfamiliar": ["images"]}
    assert verdict(resp)[0] == "unsure"

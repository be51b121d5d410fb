"""The Classify page's verdict wording on fixed API answers (ui/results.py; no server)."""

from __future__ import annotations

from evbattery.ui.results import model_title, verdict


def _p(cls: str) -> dict:
    return {"predicted_class": cls, "probabilities": {cls: 1.0}, "confidence": 1.0}


def _answer(preds: dict, agree: bool, mask_source: str = "uploaded") -> dict:
    return {"results": preds, "agree": agree, "unsure": [], "mask_source": mask_source}


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
    assert "background bias" in text and "segmenter" not in text


def test_a_segmenter_mask_adds_a_caution_only_when_they_disagree() -> None:
    split = {"images": _p("pouch"), "cutouts": _p("prismatic")}
    level, text = verdict(_answer(split, False, "segmenter"))
    assert level == "disagree" and text.startswith("**The models disagree:** Full image → **pouch**")
    assert text.endswith(" The mask was predicted by the segmenter, so first check that the cutout shows the whole "
                         "cell.")
    assert "segmenter" not in verdict(_answer({"images": _p("pouch"), "cutouts": _p("pouch")}, True, "segmenter"))[1]
    assert verdict({"results": {}}) == ("none", "No model answered.")
    assert model_title("my_model") == "My model" and model_title("cutouts") == "Cutout (background removed)"

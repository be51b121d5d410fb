"""The Classify page's banner follows the API's agree / unsure answer and never rewords a guess as agreement."""

from __future__ import annotations

from evbattery.ui.results import verdict


def answer(**kw):
    p = {"predicted_class": "pouch", "confidence": 0.9, "probabilities": {"cylindrical": 0.05, "pouch": 0.9,
                                                                         "prismatic": 0.05}}
    base = {"results": {"images": dict(p), "cutouts": dict(p)}, "agree": True, "unsure": [], "note": "Models agree",
            "mask_source": "uploaded"}
    return {**base, **kw}


def test_agree_banner():
    level, text = verdict(answer())
    assert level == "agree" and "The models agree: pouch" in text


def test_disagree_banner_names_each_models_class():
    resp = answer(agree=False)
    resp["results"]["cutouts"] = {**resp["results"]["cutouts"], "predicted_class": "prismatic"}
    level, text = verdict(resp)
    assert level == "disagree" and "Cutout (background removed) → **prismatic**" in text and "The models agree" not in text


def test_unsure_wins_over_agreement():
    resp = answer(unsure=["cutouts"])
    resp["results"]["cutouts"]["confidence"] = 0.38
    level, text = verdict(resp)
    assert level == "unsure" and "38%" in text and "agree" not in text.lower()


def test_no_models():
    assert verdict({"results": {}})[0] == "none"

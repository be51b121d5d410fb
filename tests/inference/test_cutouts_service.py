"""The inference cutout policy (uploaded > alpha > segmenter) and the generic ModelService."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from evbattery.config import CLASSES
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetLayout
from evbattery.imageio import load_mask, load_rgb
from evbattery.inference.cutouts import MaskSizeError, NoSegmenterError, cutout_for
from evbattery.inference.service import NOTE_AGREE, NOTE_DISAGREE, ModelService, UnknownModelError, agreement
from evbattery.models.checkpoint import save_checkpoint
from evbattery.models.registry import segmenter_path


class HalfMask:
    """A stand-in segmenter with a known answer (the left half is the cell)."""

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        m = np.zeros(image.shape[:2], np.uint8)
        m[:, : image.shape[1] // 2] = 255
        return m


def test_cutout_policy_order_and_errors() -> None:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    up = np.zeros((20, 30), np.uint8)
    up[5:10, 5:10] = 255
    alpha = 255 - up
    cut, mask, src = cutout_for(img, up, alpha, HalfMask())
    assert src == "uploaded" and (mask == up).all() and (cut == make_cutout(img, up)).all()
    assert cutout_for(img, None, alpha, HalfMask())[2] == "alpha"
    cut, mask, src = cutout_for(img, None, None, HalfMask())
    assert src == "segmenter" and cut[:, 15:].max() == 0 and (cut[:, :15] == img[:, :15]).all()
    with pytest.raises(MaskSizeError, match="mask size 30x21 differs from image size 30x20"):
        cutout_for(img, np.zeros((21, 30), np.uint8))
    with pytest.raises(NoSegmenterError):
        cutout_for(img)


def test_service_with_real_segmenter_checkpoint(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    from evbattery.models.segmenter import ARCH, build_segmenter

    d = tmp_path / "models"
    shutil.copytree(model_dir, d)
    save_checkpoint(segmenter_path(d), build_segmenter().state_dict(),
                    {"name": "segmenter", "arch": ARCH, "task": "segmentation", "image_size": 64})
    svc = ModelService.load(d)
    assert svc.segmenter is not None and not svc.errors
    assert list(svc.predictors) == ["images", "cutouts", "images_debiased"]
    assert svc.resolve("debiased") == "images_debiased" and svc.resolve("cutout") == "cutouts"
    with pytest.raises(UnknownModelError):
        svc.resolve("nope")
    s = DatasetLayout(toy_dataset).samples("test")[0]
    image = load_rgb(s.image)
    out = svc.run(list(svc.predictors), image)
    assert out["mask_source"] == "segmenter" and set(out["predictions"]) == set(svc.predictors)
    # With the true mask the cutout model sees exactly the cutout training makes from the stored files.
    out = svc.run(["cutouts"], image, uploaded_mask=load_mask(s.mask))
    assert out["mask_source"] == "uploaded"
    offline = svc.predictors["cutouts"].predict([make_cutout(image, load_mask(s.mask))])[0]
    assert out["predictions"]["cutouts"].probabilities == pytest.approx(offline.probabilities, abs=1e-6)
    # the notes are the ones the API documents, and each goes with its verdict
    prediction = out["predictions"]["cutouts"]
    other = type(prediction)(next(c for c in CLASSES if c != prediction.predicted_class), 1.0, {}, "images")
    same_note, split_note = agreement({"a": prediction, "b": prediction}), agreement({"a": prediction, "b": other})
    assert (same_note["agree"], same_note["note"]) == (True, NOTE_AGREE) and NOTE_AGREE == "Models agree"
    assert (split_note["agree"], split_note["note"]) == (False, NOTE_DISAGREE)
    assert NOTE_DISAGREE == "Models disagree – possible background bias"

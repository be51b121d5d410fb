"""The Classify and Models pages' display helpers, pinned (issue 25's mutation run over ui/results.py).

Probabilities most likely first, the cutout the page shows before the API answers (and its source), the
real-photo reports newest first with a broken one left out, and one table row per model with every figure.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from evbattery.data.cutouts import make_cutout
from evbattery.ui.results import (
    decode_b64_png,
    local_cutout,
    photo_eval_rows,
    png_bytes,
    read_photo_reports,
    sorted_probabilities,
)


def encode(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_probabilities_are_listed_most_likely_first_as_floats() -> None:
    pred = {"probabilities": {"cylindrical": 0.2, "pouch": np.float32(0.7), "prismatic": 0.1}}
    got = sorted_probabilities(pred)
    assert [c for c, _ in got] == ["pouch", "cylindrical", "prismatic"]
    assert all(type(p) is float for _, p in got) and got[0][1] == float(np.float32(0.7))


def test_the_local_cutout_uses_the_uploaded_mask_then_the_alpha_channel_else_none() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 255, (12, 16, 3), dtype=np.uint8)
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 255
    cut, source = local_cutout(encode(rgb), encode(mask))
    assert source == "uploaded" and np.array_equal(cut, make_cutout(rgb, mask))
    assert cut[0, 0].tolist() != rgb[0, 0].tolist() and np.array_equal(cut[5, 6], rgb[5, 6])

    rgba = np.dstack([rgb, mask])
    cut, source = local_cutout(encode(rgba, "RGBA"), None)
    assert source == "alpha" and np.array_equal(cut, make_cutout(rgb, mask))
    assert local_cutout(encode(rgb), None) == (None, None)  # the API will ask its segmenter


def test_png_round_trips_through_base64() -> None:
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data = png_bytes(arr)
    assert data.startswith(b"\x89PNG") and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), arr)
    assert decode_b64_png(base64.b64encode(data).decode()) == data


def test_photo_reports_are_read_newest_first_and_a_broken_one_is_left_out(tmp_path: Path) -> None:
    for i, name in enumerate(["eval_photos_b.json", "eval_photos_a.json", "eval_photos_c.json"]):
        (tmp_path / name).write_text(json.dumps({"n": i}))
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    (tmp_path / "eval_photos_bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text("{}")
    got = read_photo_reports(tmp_path)
    assert [(p.name, r) for p, r in got] == [("eval_photos_c.json", {"n": 2}), ("eval_photos_a.json", {"n": 1}),
                                             ("eval_photos_b.json", {"n": 0})]
    assert read_photo_reports(tmp_path / "missing") == []


def test_each_model_gets_one_row_with_its_interval_backbone_and_every_class_recall() -> None:
    report = {"models": {
        "images": {"input": "images", "arch": "efficientnet_lite0", "balanced_accuracy": 0.7143,
                   "balanced_accuracy_ci": [0.524, 0.856],
                   "recall": {"cylindrical": {"n": 14, "recall": 0.857}, "pouch": {"n": 6, "recall": 0.5}}},
        "seed_model": {"input": "cutouts", "balanced_accuracy": 0.41, "balanced_accuracy_ci": [0.3, 0.5],
                       "recall": {"pouch": {"n": 6, "recall": 1.0}}}}}
    assert photo_eval_rows(report) == [
        {"model": "Full image", "backbone": "efficientnet_lite0", "input": "images", "balanced accuracy": "71.4%",
         "95 % CI": "52%–86%", "recall cylindrical": "86% (n=14)", "recall pouch": "50% (n=6)"},
        {"model": "Seed model", "backbone": "resnet18", "input": "cutouts", "balanced accuracy": "41.0%",
         "95 % CI": "30%–50%", "recall pouch": "100% (n=6)"}]

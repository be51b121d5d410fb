"""Checkpoint contract and the Predictor's one preprocessing path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evbattery.data.transforms import normalize, resize_uint8
from evbattery.inference.predictor import Predictor
from evbattery.models.checkpoint import CheckpointError, default_meta, load_checkpoint, save_checkpoint
from evbattery.models.classifier import build_classifier, load_classifier


def _save(path: Path, classes: int = 3, size: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    model, desc = build_classifier(classes, pretrained="none")
    meta = default_meta("images") | {"image_size": size, "classes": ["cylindrical", "pouch", "prismatic"][:classes],
                                      "pretrained": desc}
    save_checkpoint(path, model.state_dict(), meta)
    return model


def test_roundtrip_weights_only(tmp_path: Path) -> None:
    model = _save(tmp_path / "best_model_images.pth")
    raw = torch.load(tmp_path / "best_model_images.pth", weights_only=True)
    assert raw["format"] == "evbattery.checkpoint/1"
    assert {"torch", "torchvision", "evbattery"} <= set(raw["meta"]["versions"])
    loaded, meta = load_classifier(tmp_path / "best_model_images.pth")
    assert meta["image_size"] == 32 and meta["pretrained"] == "none"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert [p.name for p in tmp_path.iterdir()] == ["best_model_images.pth"]  # no temp files left


def test_bare_state_dict_loads_with_warning(tmp_path: Path) -> None:
    model, _ = build_classifier(3)
    torch.save(model.state_dict(), tmp_path / "best_model_cutouts.pth")
    with pytest.warns(UserWarning, match="bare state_dict"):
        ckpt = load_checkpoint(tmp_path / "best_model_cutouts.pth")
    assert ckpt["meta"]["input_type"] == "cutouts" and ckpt["meta"]["image_size"] == 224


def test_wrong_head_is_a_clear_error(tmp_path: Path) -> None:
    model, _ = build_classifier(5)
    save_checkpoint(tmp_path / "m.pth", model.state_dict(), default_meta("images"))  # meta says 3 classes
    with pytest.raises(CheckpointError, match="do not fit resnet18 with 3 classes"):
        load_classifier(tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")


def test_predictor_equals_manual_pipeline(tmp_path: Path) -> None:
    _save(tmp_path / "best_model_images.pth")
    pred = Predictor.from_checkpoint(tmp_path / "best_model_images.pth", fast=False)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    out = pred.predict(images, batch_size=2)
    x = normalize(torch.stack([resize_uint8(im, 32) for im in images]), pred.mean, pred.std)
    with torch.no_grad():
        ref = torch.softmax(pred.model(x), 1).numpy()
    got = np.array([[p.probabilities[c] for c in pred.classes] for p in out])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert [p.predicted_class for p in out] == [pred.classes[i] for i in ref.argmax(1)]
    fast = Predictor.from_checkpoint(tmp_path / "best_model_images.pth", fast=True, bf16=False)
    np.testing.assert_allclose(fast.logits(torch.stack([fast.prepare(im) for im in images])),
                               [p.logits for p in out], atol=1e-3)



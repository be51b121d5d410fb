"""ONNX export: one self-contained file per model whose ORT logits match torch fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from serving_models import toy_test_files

from evbattery.core.imageio import load_rgb
from evbattery.inference.export import export_onnx
from evbattery.inference.onnx import max_abs_diff, read_onnx_meta
from evbattery.inference.predictor import Predictor
from evbattery.models.registry import discover_models


def test_onnx_export_parity(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    ckpt = discover_models(model_dir)["images"]
    torch_pred = Predictor.from_checkpoint(ckpt, fast=False)
    out = export_onnx(ckpt, tmp_path / "images.onnx")
    assert out.is_file() and not list(tmp_path.glob("*.data")), "weights must be inside the .onnx"
    meta = read_onnx_meta(out)
    assert meta["classes"] == torch_pred.classes and meta["image_size"] == 64
    onnx_pred = Predictor.from_onnx(out)
    assert onnx_pred.backend == "onnx" and onnx_pred.name == "images"
    images = [load_rgb(p) for p, _, _ in toy_test_files(toy_dataset)]
    for n in (1, 5):  # dynamic batch axis
        batch = torch.stack([torch_pred.prepare(im) for im in images[:n]])
        a, b = torch_pred.logits(batch), onnx_pred.logits(batch)
        assert a.shape == b.shape == (n, 3)
        assert max_abs_diff(a, b) < 1e-3
    pa = [p.predicted_class for p in torch_pred.predict(images)]
    pb = [p.predicted_class for p in onnx_pred.predict(images)]
    assert pa == pb
    assert np.isfinite(onnx_pred.logits(batch)).all()


def test_service_loads_onnx_backend(model_dir: Path, tmp_path: Path) -> None:
    from evbattery.inference.service import load_predictors

    export_onnx(discover_models(model_dir)["cutouts"], tmp_path / "cutouts.onnx")
    preds = load_predictors(model_dir, backend="onnx", onnx_dir=tmp_path, names=["cutouts"])
    assert preds["cutouts"].backend == "onnx" and preds["cutouts"].input_type == "cutouts"


@pytest.mark.slow
def test_mask_attention_model_exports_and_explains(toy_dataset: Path, tmp_path: Path) -> None:
    """A --head mask_attention checkpoint (its attention scores made non-flat, so the pool matters) gives the
    same logits in ONNX Runtime as in torch, and Grad-CAM runs on its layer4."""
    from evbattery.core.config import CLASSES
    from evbattery.inference.gradcam import gradcam_maps
    from evbattery.models.checkpoint import save_checkpoint
    from evbattery.models.classifier import new_classifier

    torch.manual_seed(0)
    model = new_classifier(len(CLASSES), "mask_attention")
    torch.nn.init.normal_(model.attn.weight, std=0.05)
    ckpt = tmp_path / "best_model_images.pth"
    save_checkpoint(ckpt, model.state_dict(), {"name": "images", "arch": "resnet18", "head": "mask_attention",
                                               "task": "classification", "input_type": "images",
                                               "classes": list(CLASSES), "image_size": 64})
    torch_pred = Predictor.from_checkpoint(ckpt, fast=False)
    onnx_pred = Predictor.from_onnx(export_onnx(ckpt, tmp_path / "images.onnx"))
    images = [load_rgb(p) for p, _, _ in toy_test_files(toy_dataset)[:4]]
    batch = torch.stack([torch_pred.prepare(im) for im in images])
    assert max_abs_diff(torch_pred.logits(batch), onnx_pred.logits(batch)) < 1e-3
    cams = gradcam_maps(torch_pred, batch)
    assert cams.shape == (4, 64, 64) and np.isfinite(cams).all() and cams.max() > 0

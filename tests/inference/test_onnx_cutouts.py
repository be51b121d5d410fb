"""ONNX parity for the cutout model: ORT logits match torch fp32 on cutouts, through the Predictor and the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from evbattery.core.imageio import load_mask, load_rgb
from evbattery.data.layout import DatasetLayout
from evbattery.inference.export import export_onnx
from evbattery.inference.onnx import max_abs_diff
from evbattery.inference.predictor import Predictor
from evbattery.inference.service import ModelService
from evbattery.models.registry import discover_models


def test_cutout_model_onnx_parity(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    ckpt = discover_models(model_dir)["cutouts"]
    torch_pred = Predictor.from_checkpoint(ckpt, fast=False)
    onnx_pred = Predictor.from_onnx(export_onnx(ckpt, tmp_path / "onnx" / "cutouts.onnx"))
    assert onnx_pred.input_type == "cutouts" and onnx_pred.backend == "onnx"
    samples = DatasetLayout(toy_dataset).samples("test")
    cutouts = [load_rgb(s.cutout) for s in samples]
    batch = torch.stack([torch_pred.prepare(c) for c in cutouts])
    a, b = torch_pred.logits(batch), onnx_pred.logits(batch)
    assert a.shape == (len(samples), 3) and max_abs_diff(a, b) < 1e-3
    assert [p.predicted_class for p in torch_pred.predict(cutouts)] == [p.predicted_class for p in onnx_pred.predict(cutouts)]
    # the cutout logits are not those of the photos: the model really gets cutouts
    photos = torch.stack([torch_pred.prepare(load_rgb(s.image)) for s in samples])
    assert max_abs_diff(onnx_pred.logits(photos), b) > 1e-2

    # The service on the onnx backend builds the cutout from photo + mask and answers as torch fp32 does.
    from evbattery.data.cutouts import make_cutout

    export_onnx(discover_models(model_dir)["images"], tmp_path / "onnx" / "images.onnx")
    onnx_svc = ModelService.load(model_dir, backend="onnx", onnx_dir=tmp_path / "onnx")
    assert onnx_svc.predictors["cutouts"].backend == "onnx" and "images_debiased" in onnx_svc.errors
    for s in samples[:6]:
        image, mask = load_rgb(s.image), load_mask(s.mask)
        x = onnx_svc.run(["cutouts"], image, uploaded_mask=mask)
        assert x["mask_source"] == "uploaded"
        px, (py,) = x["predictions"]["cutouts"], torch_pred.predict([make_cutout(image, mask)])
        assert px.predicted_class == py.predicted_class
        assert np.allclose(list(px.probabilities.values()), list(py.probabilities.values()), atol=1e-3)

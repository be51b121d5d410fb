"""attach_onnx_runtime (inference/export.py): a Predictor's logits through ONNX Runtime, parity-checked, with its
torch model kept for Grad-CAM; and the bias suite's --onnx switch giving the same report as torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from known_models import colour_predictor, photo, write_colour_dataset, write_colour_readers

from evbattery.inference.export import attach_onnx_runtime
from evbattery.inference.gradcam import gradcam_maps
from evbattery.inference.predictor import Predictor


def photos(n: int = 6) -> torch.Tensor:
    pred = colour_predictor()
    return torch.stack([pred.prepare(photo(k % 3, (k + 1) % 3, seed=k)[0]) for k in range(n)])


def test_attached_logits_match_torch_and_grad_cam_still_runs() -> None:
    pred = colour_predictor()
    x = photos()
    ref = pred.logits(x)
    assert attach_onnx_runtime(pred) is None
    assert pred.backend == "onnx" and pred.model is not None
    np.testing.assert_allclose(pred.logits(x), ref, atol=1e-3)
    assert list(pred.logits(x).argmax(1)) == [0, 1, 2, 0, 1, 2]  # the background's class, as in torch
    cams = gradcam_maps(pred, x[:2])
    assert len(cams) == 2 and cams[0].shape == (48, 48)
    assert attach_onnx_runtime(pred) == f"{pred.source}: already runs onnx"


def test_bf16_and_quantized_predictors_stay_on_torch() -> None:
    base = colour_predictor()
    bf16 = Predictor(base.model, base.meta, fast=True, bf16=True)
    assert "only for fp32 models on CPUs without bf16" in attach_onnx_runtime(bf16)
    assert bf16.backend == "torch"
    int8 = Predictor(base.model, {**base.meta, "quantization": {"precision": "int8"}}, fast=False)
    assert "only for fp32 models" in attach_onnx_runtime(int8) and int8.backend == "torch"


def test_a_parity_failure_keeps_torch() -> None:
    pred = colour_predictor()
    x = photos(3)
    ref = pred.logits(x)
    why = attach_onnx_runtime(pred, atol=-1.0)  # no difference passes a negative tolerance
    assert why is not None and "ONNX logits differ from torch by" in why and why.endswith("kept torch")
    assert pred.backend == "torch" and pred._session is None
    np.testing.assert_array_equal(pred.logits(x), ref)


@pytest.mark.slow
def test_bias_suite_through_onnx_runtime_reports_what_torch_reports(tmp_path: Path) -> None:
    from evbattery.evaluation.bias import run_bias_suite

    data = write_colour_dataset(tmp_path / "data", per_group=2, balanced=True)
    models = write_colour_readers(tmp_path / "models")
    on = run_bias_suite(data, models, onnx="on", cam_limit=6, progress=False).summary
    off = run_bias_suite(data, models, onnx="off", cam_limit=6, progress=False).summary
    auto = run_bias_suite(data, models, cam_limit=6, progress=False).summary  # 18 photos x 7: below the threshold
    assert {e["backend"] for e in on["evaluations"].values()} == {"onnx"}
    assert {e["backend"] for e in off["evaluations"].values()} == {"torch"}
    assert {e["backend"] for e in auto["evaluations"].values()} == {"torch"}
    for label, e in off["evaluations"].items():
        assert on["evaluations"][label]["accuracy"] == e["accuracy"]
        assert on["evaluations"][label]["bg_gap"] == e["bg_gap"]
        assert on["evaluations"][label]["gradcam_inside"]["mean"] == pytest.approx(e["gradcam_inside"]["mean"])
    assert off["evaluations"]["images"]["bg_gap"] > 0.2  # the background reader: the check compares real numbers
    with pytest.raises(ValueError, match="onnx='fast': expected auto, on or off"):
        run_bias_suite(data, models, onnx="fast")

"""ONNX Runtime as the CPU backend of batch jobs (inference/cpu_onnx.py): a Predictor's logits and a Segmenter's
masks, parity-checked, with the torch model kept for Grad-CAM; probe features; timm's dynamic SAME padding fixed
for export; and the bias suite's --onnx switch giving the same report as torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from known_models import colour_predictor, photo, write_colour_dataset, write_colour_readers

from evbattery.inference.cpu_onnx import ORT_MIN_FORWARDS, attach_onnx_runtime, static_same_padding
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


def test_bf16_predictors_attach_only_when_asked_and_quantized_ones_never() -> None:
    base = colour_predictor()
    bf16 = Predictor(base.model, base.meta, fast=True, bf16=True)
    assert "this CPU has native bf16" in attach_onnx_runtime(bf16, n_forwards=10_000)
    assert bf16.backend == "torch" and bf16.bf16
    assert attach_onnx_runtime(bf16) is None and bf16.backend == "onnx" and bf16.precision == "fp32"  # --onnx on
    failed = Predictor(base.model, base.meta, fast=True, bf16=True)
    assert attach_onnx_runtime(failed, atol=-1.0).endswith("kept torch") and failed.bf16  # unchanged on failure
    int8 = Predictor(base.model, {**base.meta, "quantization": {"precision": "int8"}}, fast=False)
    assert "only for fp32 models" in attach_onnx_runtime(int8) and int8.backend == "torch"


def test_a_parity_failure_keeps_torch() -> None:
    pred = colour_predictor()
    x = photos(3)
    ref = pred.logits(x)
    why = attach_onnx_runtime(pred, atol=-1.0)  # no difference passes a negative tolerance
    assert why is not None and "ONNX output differs from torch by" in why and why.endswith("kept torch")
    assert pred.backend == "torch" and pred._session is None
    np.testing.assert_array_equal(pred.logits(x), ref)


def test_too_few_forward_passes_stay_on_torch() -> None:
    pred = colour_predictor()
    assert attach_onnx_runtime(pred, n_forwards=ORT_MIN_FORWARDS - 1) == (
        f"{pred.source}: {ORT_MIN_FORWARDS - 1} forward passes are too few to repay an ONNX export "
        f"(from {ORT_MIN_FORWARDS})")
    assert pred.backend == "torch"
    assert attach_onnx_runtime(pred, n_forwards=ORT_MIN_FORWARDS) is None and pred.backend == "onnx"


def lite0(size: int = 72) -> tuple[torch.nn.Module, torch.Tensor]:
    """A randomly initialised EfficientNet-Lite0 (timm, TF-style SAME padding) and a batch for it."""
    from evbattery.models.classifier import new_classifier

    torch.manual_seed(0)
    return new_classifier(3, arch="efficientnet_lite0").eval(), torch.randn(3, 3, size, size)


def test_static_same_padding_computes_what_the_dynamic_padding_does() -> None:
    from timm.layers.conv2d_same import Conv2dSame

    model, x = lite0(size=65)  # odd sizes pad asymmetrically: the fixed pads must be the dynamic ones
    fixed = static_same_padding(model, x)
    assert sum(isinstance(m, Conv2dSame) for m in model.modules()) == 5  # the model is left as it was
    assert not any(isinstance(m, Conv2dSame) for m in fixed.modules())
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), model(x), rtol=0, atol=1e-5)


def test_lite_predictor_and_segmenter_through_onnx_runtime_match_torch() -> None:
    from evbattery.inference.segmenter import Segmenter
    from evbattery.models.segmenter import build_segmenter

    model, _ = lite0()
    pred = Predictor(model, {"classes": ["cylindrical", "pouch", "prismatic"], "image_size": 72,
                             "arch": "efficientnet_lite0"}, fast=False)
    x = torch.randint(0, 256, (5, 3, 72, 72), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ref = pred.logits(x)
    assert attach_onnx_runtime(pred) is None and pred.backend == "onnx"
    np.testing.assert_allclose(pred.logits(x), ref, atol=1e-4)

    torch.manual_seed(0)
    seg = Segmenter(build_segmenter("unet_efficientnet_lite0"), {"image_size": 64, "arch": "unet_efficientnet_lite0"},
                    device="cpu")
    images = [photo(k % 3, (k + 1) % 3, seed=k)[0] for k in range(4)]
    torch_masks = seg.predict_masks(images)
    assert attach_onnx_runtime(seg) is None and seg.backend == "onnx"
    onnx_masks = seg.predict_masks(images)
    assert [m.shape for m in onnx_masks] == [im.shape[:2] for im in images]
    agree = np.mean([(a == b).mean() for a, b in zip(torch_masks, onnx_masks, strict=True)])
    assert agree > 0.999  # random weights: a handful of near-tie pixels may flip


def test_probe_features_through_onnx_runtime_match_torch() -> None:
    from evbattery.training.probe import pooled_features

    model, _ = lite0()
    images = torch.randint(0, 256, (ORT_MIN_FORWARDS, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    norm = ([0.5] * 3, [0.5] * 3)
    head = model.get_classifier()
    ref = pooled_features(model, head, images, norm, onnx=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed export would warn and fall back to torch
        fast = pooled_features(model, head, images, norm)
    assert fast.shape == ref.shape == (ORT_MIN_FORWARDS, head.in_features)
    np.testing.assert_allclose(fast, ref, atol=1e-4)
    assert not np.array_equal(fast, ref)  # another backend computed them: not bit for bit torch's
    assert isinstance(model.get_classifier(), torch.nn.Linear)  # the model keeps its head


@pytest.mark.slow
def test_bias_suite_through_onnx_runtime_reports_what_torch_reports(tmp_path: Path) -> None:
    from evbattery.evaluation.bias import run_bias_suite

    data = write_colour_dataset(tmp_path / "data", per_group=2, balanced=True)
    models = write_colour_readers(tmp_path / "models")
    on = run_bias_suite(data, models, onnx="on", cam_limit=6, progress=False).summary
    off = run_bias_suite(data, models, onnx="off", cam_limit=6, progress=False).summary
    few = run_bias_suite(data, models, cam_limit=6, progress=False, limit=12).summary  # 12 photos x 7 < 100
    assert {e["backend"] for e in on["evaluations"].values()} == {"onnx"}
    assert {e["backend"] for e in off["evaluations"].values()} == {"torch"}
    assert {e["backend"] for e in few["evaluations"].values()} == {"torch"}
    for label, e in off["evaluations"].items():
        assert on["evaluations"][label]["accuracy"] == e["accuracy"]
        assert on["evaluations"][label]["bg_gap"] == e["bg_gap"]
        assert on["evaluations"][label]["gradcam_inside"]["mean"] == pytest.approx(e["gradcam_inside"]["mean"])
    assert off["evaluations"]["images"]["bg_gap"] > 0.2  # the background reader: the check compares real numbers
    with pytest.raises(ValueError, match="onnx='fast': expected auto, on or off"):
        run_bias_suite(data, models, onnx="fast")


def test_the_auto_backend_serves_through_onnx_runtime_on_cpus_without_bf16(tmp_path: Path) -> None:
    """What the API and the predict CLI load by default: the checkpoints, with their logits through ONNX Runtime
    where torch has no bf16 path (2-3x at batch 1), the same answers as torch, and torch for a few photos."""
    from evbattery.core.devices import cpu_supports_bf16
    from evbattery.inference.service import ModelService

    models = write_colour_readers(tmp_path / "models")
    auto = ModelService.load(models, device="cpu")
    torch_only = ModelService.load(models, backend="torch", device="cpu")
    few = ModelService.load(models, device="cpu", forwards=1)
    expected = "torch" if cpu_supports_bf16() else "onnx"
    assert {p.backend for p in auto.predictors.values()} == {expected}
    assert {p.backend for p in torch_only.predictors.values()} == {p.backend for p in few.predictors.values()} == {
        "torch"}
    assert {m["backend"] for m in auto.describe()} == {expected}  # what /models reports
    for k in range(3):
        image = photo(k, (k + 1) % 3, seed=k)[0]
        a, t = (svc.run(["images"], image)["predictions"]["images"] for svc in (auto, torch_only))
        assert a.predicted_class == t.predicted_class == ["cylindrical", "pouch", "prismatic"][k]  # the background's
        np.testing.assert_allclose(list(a.probabilities.values()), list(t.probabilities.values()), atol=1e-4)

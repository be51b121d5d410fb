"""The small helpers around train.main(), pinned (issue 25's mutation run over training/train.py).

Batches reach the device they are asked for, a segmenter's {"out": map} is what gets scored, a checkpoint of
another architecture or class list cannot start or resume training, and a segmenter run sends no classifier
report to W&B. Real models, data and tensors throughout; the stand-ins are the W&B run (an outside service) and,
for the DDP case, torch.distributed's answers for a 2-process group. Refusals that go through a whole train.main()
run are in test_train.py; these stay fast enough to run against every mutant.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from toy_data import make_toy_dataset, tiny_config

from evbattery.core.tracking import Tracker
from evbattery.models.checkpoint import CheckpointError
from evbattery.models.segmenter import SegmentationLoss, build_segmenter
from evbattery.training import train
from evbattery.training.train import _finish, _to, check_compatible, evaluate

CLASSES = ["cylindrical", "pouch", "prismatic"]


def test_a_batch_moves_to_the_device_asked_and_stays_where_it_already_is() -> None:
    t = torch.arange(6.0)
    moved = _to(t, torch.device("meta"))  # a second device every machine has
    assert moved.device.type == "meta" and t.device.type == "cpu"
    assert _to(t, torch.device("cpu")) is t and _to(t, None) is t


def test_a_segmenters_out_map_is_scored() -> None:
    """evaluate() on a real U-Net, whose forward returns {"out": (N, 2, S, S)}: loss and IoU of that map."""
    torch.manual_seed(0)
    model = build_segmenter("unet_resnet18").eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[:, 8:24, 8:24] = 1
    got = evaluate(model, SegmentationLoss(), [(x, y)], fast=False, norm=([0.5] * 3, [0.5] * 3))
    with torch.no_grad():
        logits = model((x.float() / 255 - 0.5) / 0.5)["out"]
    pred = logits.argmax(1)
    inter, union = ((pred == 1) & (y == 1)).sum().item(), ((pred == 1) | (y == 1)).sum().item()
    assert got["loss"] == pytest.approx(SegmentationLoss()(logits, y).item(), rel=1e-5)
    assert got["acc"] == pytest.approx((pred == y).float().mean().item())
    assert got["iou"] == pytest.approx(inter / union) and "y_true" not in got


def test_a_checkpoint_of_another_arch_or_class_list_is_refused() -> None:
    check_compatible({"arch": "resnet18", "classes": CLASSES}, "resnet18", CLASSES, "a.pth")
    check_compatible({}, "efficientnet_lite0", CLASSES, "bare.pth")  # a checkpoint that names neither: allowed
    check_compatible({"classes": CLASSES}, "resnet18", CLASSES, "old.pth")
    with pytest.raises(CheckpointError, match=r"^a\.pth: architecture 'efficientnet_lite0' does not match "
                                              r"'resnet18'$"):
        check_compatible({"arch": "efficientnet_lite0", "classes": CLASSES}, "resnet18", CLASSES, "a.pth")
    with pytest.raises(CheckpointError, match=r"^b\.pth: classes \['pouch', 'cylindrical', 'prismatic'\] do not "
                                              r"match the dataset's \['cylindrical', 'pouch', 'prismatic'\]$"):
        check_compatible({"arch": "resnet18", "classes": ["pouch", "cylindrical", "prismatic"]}, "resnet18",
                         CLASSES, "b.pth")


class RecordingTracker(Tracker):
    """A file tracker with a stand-in W&B run: what would go to W&B is recorded instead."""

    def __init__(self, runs_dir: Path) -> None:
        super().__init__(runs_dir, "r", {}, backend="none")
        self.run = SimpleNamespace(summary={}, finish=lambda: None)
        self.classification: list[tuple[Any, ...]] = []

    def log_classification(self, *args: Any, **kwargs: Any) -> None:
        self.classification.append(args)


def test_a_segmenter_run_sends_no_classifier_report_to_wandb(tmp_path: Path) -> None:
    data = make_toy_dataset(tmp_path / "data", n=(2, 1, 1), size=32)
    cfg = tiny_config(data, tmp_path, input_type="masks", progress=False)
    best = tmp_path / "segmenter.pth"
    best.write_bytes(b"a segmenter checkpoint, not a classifier's")  # must not be loaded as a classifier
    tracker = RecordingTracker(tmp_path / "runs")
    result = {"history": [], "best_epoch": 1, "best_val_loss": 0.5, "checkpoint": str(best)}
    _finish(cfg, tracker, best, None, [], SegmentationLoss(), ["background", "cell"], result)
    run = tracker.run
    tracker.finish()
    assert tracker.classification == [] and run.summary == {"best_epoch": 1, "best_val_loss": 0.5,
                                                                     "checkpoint": str(best)}


def test_a_classifier_run_sends_the_best_models_val_report_to_wandb(tmp_path: Path) -> None:
    """With a W&B run: the best checkpoint's predictions on the val split, per-class metrics and samples."""
    from evbattery.inference.predictor import Predictor

    data = make_toy_dataset(tmp_path / "data", n=(4, 2, 1), size=32)
    cfg = tiny_config(data, tmp_path, device="cpu")
    result = train.main(cfg)
    best = Path(result["checkpoint"])
    _, val_ds, _, val_loader = train.load_data(cfg)
    tracker = RecordingTracker(tmp_path / "runs")
    _finish(cfg, tracker, best, val_ds, val_loader, torch.nn.CrossEntropyLoss(), CLASSES, result)
    tracker.finish()
    ((prefix, y_true, y_pred, classes, per_class, samples),) = tracker.classification
    photos = [val_ds.images[i].permute(1, 2, 0).numpy() for i in range(6)]
    expected = Predictor.from_checkpoint(best, fast=False, device="cpu").predict(photos)
    assert prefix == "val" and classes == CLASSES and y_true == [0, 0, 1, 1, 2, 2]
    assert y_pred == [CLASSES.index(p.predicted_class) for p in expected]
    assert sorted(per_class) == CLASSES and [s[1:3] for s in samples] == list(zip(y_true, y_pred, strict=True))
    for (img, *_, conf), ph, p in zip(samples, photos, expected, strict=True):
        assert (img == ph).all() and conf == pytest.approx(max(p.probabilities.values()), abs=1e-4)


@pytest.mark.parametrize(("arch", "segmenter_arch", "mean"), [
    ("resnet18", "unet_efficientnet_lite0", [0.5] * 3),
    ("efficientnet_lite0", "unet_resnet18", [0.485, 0.456, 0.406]),
])
def test_a_segmenter_trains_with_its_own_encoders_normalisation(tmp_path: Path, arch: str, segmenter_arch: str,
                                                               mean: list[float]) -> None:
    cfg = tiny_config(tmp_path, tmp_path, input_type="masks", arch=arch, segmenter_arch=segmenter_arch)
    assert train.input_norm(cfg)[0] == pytest.approx(mean)


def test_the_default_optimizer_is_fused_adam_without_weight_decay() -> None:
    """What the benches train with: make_optimizer(model, lr) is plain Adam (no decay), fused; adamw on request."""
    model = torch.nn.Linear(4, 3)
    opt = train.make_optimizer(model, lr=1e-3)
    assert type(opt) is torch.optim.Adam and opt.defaults["fused"] is True
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["weight_decay"] == 0.0
    opt = train.make_optimizer(model, 0.01, "adamw", 0.05)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is True
    assert opt.param_groups[0]["weight_decay"] == 0.05 and len(opt.param_groups[0]["params"]) == 2


def _lrs(cfg: Any, steps: int, steps_per_epoch: int = 1) -> list[float]:
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=cfg.effective_lr)
    sched = train.make_scheduler(cfg, opt, steps_per_epoch)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(("epochs", "drops_after"), [(7, 3), (6, 2), (2, 1), (1, 1)])
def test_the_step_schedule_divides_the_lr_by_10_every_third_of_the_run(tmp_path: Path, epochs: int,
                                                                       drops_after: int) -> None:
    cfg = tiny_config(tmp_path, tmp_path, scheduler="step", epochs=epochs, lr=0.1)
    lrs = _lrs(cfg, epochs)
    expected = [0.1 * 0.1 ** (e // drops_after) for e in range(epochs)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_cosine_runs_to_zero_over_the_epochs_and_onecycle_over_every_step(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path, scheduler="cosine", epochs=4, lr=0.1)
    assert _lrs(cfg, 5) == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)], abs=1e-12)
    cfg = tiny_config(tmp_path, tmp_path, scheduler="onecycle", epochs=2, lr=0.1, warmup_pct=0.25)
    lrs = _lrs(cfg, 8, steps_per_epoch=4)  # 8 steps: 2 of warm-up from 0.1 / 25 to the peak, 6 of annealing
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 1
    assert lrs[-1] < lrs[-2] < 0.1 and lrs[-1] > 0
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    sched = train.make_scheduler(cfg, opt, 0)
    assert sched.total_steps == 1  # no batches: still a valid schedule
    assert opt.param_groups[0]["momentum"] == 0.9  # the schedule leaves momentum alone (Adam's betas too)


@pytest.mark.parametrize(("kw", "best", "last"), [
    ({"input_type": "images"}, "best_model_images.pth", "last_images.pth"),
    ({"input_type": "cutouts", "name": "c2"}, "best_model_c2.pth", "last_c2.pth"),
    ({"input_type": "masks"}, "segmenter.pth", "last_segmenter.pth"),  # where every consumer looks for it
    ({"input_type": "masks", "name": "seg96"}, "best_model_seg96.pth", "last_seg96.pth"),
])
def test_checkpoint_paths(tmp_path: Path, kw: dict[str, str], best: str, last: str) -> None:
    cfg = tiny_config(tmp_path, tmp_path, **kw)
    assert train._paths(cfg) == (tmp_path / "model" / best, tmp_path / "model" / last)


def test_load_data_wires_bg_swap_progress_and_batch_augmentation_into_the_datasets(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = make_toy_dataset(tmp_path / "data", n=(4, 2, 1), size=32)
    train_ds, val_ds, _, _ = train.load_data(tiny_config(data, tmp_path, debias="bg-swap", swap_prob=0.5))
    assert train_ds.swap_prob == 0.5 and val_ds.swap_prob == 0.0
    assert capfd.readouterr().err == ""  # progress off: no bars

    train_ds, val_ds, _, _ = train.load_data(tiny_config(data, tmp_path, swap_prob=0.5, progress=True))
    assert train_ds.swap_prob == 0.0  # swap_prob counts only with --debias bg-swap
    err = capfd.readouterr().err
    assert "decode train/images" in err and "decode val/images" in err
    # batch augmentation (the default): the loop augments; items are the cached photos as they are
    assert train_ds.transform is None and all(torch.equal(train_ds[i][0], train_ds.images[i]) for i in range(12))

    train_ds, val_ds, _, _ = train.load_data(tiny_config(data, tmp_path, batch_augment=False))
    assert train_ds.transform is not None and val_ds.transform is None  # per-sample augmentation, train only


def test_load_data_hands_every_training_setting_to_the_datasets_and_loaders(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

    from evbattery.data.layout import DatasetLayout

    data = make_toy_dataset(tmp_path / "data", n=(4, 2, 1), size=32)
    cfg = tiny_config(data, tmp_path, device="cpu", zoom_prob=0.4, bg_fade_epochs=2, head="mask_attention",
                      swap_synth_share=0.7, limit_train=5, seed=3, batch_size=4, image_size=24)
    train_ds, val_ds, train_loader, val_loader = train.load_data(cfg, torch.device("cpu"))
    every = DatasetLayout(data).require_split("train")
    assert [s.key for s in train_ds.samples] == [every[i].key for i in sorted(
        np.random.default_rng(3).permutation(12)[:5])]  # the seeded subset of 5
    assert len(val_ds) == 6 and train_ds.split == "train" and val_ds.split == "val"
    assert train_ds.kind == val_ds.kind == "images" and train_ds.train and not val_ds.train
    assert tuple(train_ds.images.shape[1:]) == tuple(val_ds.images.shape[1:]) == (3, 24, 24)
    assert train_ds.zoom_prob == 0.4 and train_ds.bg_fade and train_ds.mask_targets
    assert train_ds.synth_share == 0.7 and val_ds.zoom_prob == 0.0 and not val_ds.mask_targets
    assert train_loader.batch_size == val_loader.batch_size == 4
    assert train_loader.drop_last and not val_loader.drop_last  # 5 photos > a batch of 4: the ragged one dropped
    assert isinstance(train_loader.sampler, RandomSampler) and isinstance(val_loader.sampler, SequentialSampler)
    assert train_loader.generator.initial_seed() == 3
    for loader in (train_loader, val_loader):
        assert loader.num_workers == 0 and not loader.persistent_workers and not loader.pin_memory

    cfg = tiny_config(data, tmp_path, device="cpu", workers=1, batch_size=16, bg_fade_epochs=0)
    train_ds, _, train_loader, val_loader = train.load_data(cfg)
    assert not train_loader.drop_last and not train_ds.bg_fade and not train_ds.mask_targets  # 12 photos <= 16
    assert train_loader.num_workers == val_loader.num_workers == 1
    assert train_loader.persistent_workers and val_loader.persistent_workers
    train_ds, _, train_loader, val_loader = train.load_data(tiny_config(data, tmp_path, device="cpu", batch_size=12,
                                                                        bg_fade_epochs=1), torch.device("cpu"))
    assert type(train_loader) is type(val_loader) is DataLoader  # GPU-resident batches are for CUDA only
    assert not train_loader.drop_last  # exactly one full batch: nothing to drop
    assert train_ds.bg_fade  # a fade over one epoch is a fade


def test_a_classifier_needs_two_classes_in_train_a_segmenter_does_not(tmp_path: Path) -> None:
    import shutil

    from evbattery.data.layout import DatasetError

    data = make_toy_dataset(tmp_path / "data", n=(2, 1, 1), size=32)
    for kind in ("images", "masks", "cutouts"):
        for cls in ("pouch", "prismatic"):
            shutil.rmtree(data / "train" / kind / cls)
    with pytest.raises(DatasetError, match=r"has images of only \['cylindrical'\] class\(es\); a classifier needs"):
        train.load_data(tiny_config(data, tmp_path))
    train_ds, _, _, _ = train.load_data(tiny_config(data, tmp_path, input_type="masks"))  # cells of one class
    assert len(train_ds) == 2 and train_ds.kind == "masks"


def test_under_ddp_each_rank_trains_on_its_seeded_shuffled_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """Rank 0 of 2 (torch.distributed's answers stand in for a 2-process group): a DistributedSampler, seeded."""
    from torch.utils.data import DistributedSampler

    data = make_toy_dataset(tmp_path / "data", n=(4, 2, 1), size=32)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 0)
    train_ds, _, train_loader, val_loader = train.load_data(tiny_config(data, tmp_path, device="cpu", seed=5))
    sampler = train_loader.sampler
    assert isinstance(sampler, DistributedSampler) and sampler.dataset is train_ds
    assert (sampler.num_replicas, sampler.rank, sampler.shuffle, sampler.seed) == (2, 0, True, 5)
    assert len(list(sampler)) == 6  # half of the 12 photos
    assert not isinstance(val_loader.sampler, DistributedSampler)  # every rank scores the whole val split


def test_build_model_for_each_task_and_start(tmp_path: Path) -> None:
    """masks -> the segmenter; imagenet -> the shipped Lite weights (offline); the meta and loss exactly."""
    from evbattery.models.checkpoint import save_checkpoint

    model, loss, meta = train.build_model(tiny_config(tmp_path, tmp_path, input_type="masks"), CLASSES)
    assert type(loss) is SegmentationLoss and meta["task"] == "segmentation" and "out" in model.eval()(
        torch.zeros(1, 3, 32, 32))
    cfg = tiny_config(tmp_path, tmp_path, pretrained="imagenet", arch="efficientnet_lite0", label_smoothing=0.1)
    model, loss, meta = train.build_model(cfg, CLASSES)
    assert meta == {"arch": "efficientnet_lite0", "head": "avgpool", "task": "classification", "input_type": "images",
                    "classes": CLASSES, "pretrained": "imagenet"}
    assert type(loss) is torch.nn.CrossEntropyLoss and loss.label_smoothing == 0.1
    from evbattery.models.classifier import resolve_pretrained

    sd, _ = resolve_pretrained("imagenet", "efficientnet_lite0")
    assert torch.equal(model.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])  # the ImageNet weights

    bare = tmp_path / "other.pth"
    torch.save({"layer9.weight": torch.zeros(2)}, bare)
    save_checkpoint(tmp_path / "lite_seg.pth", {"w": torch.zeros(1)}, {"arch": "unet_efficientnet_lite0",
                                                                        "task": "segmentation"})
    with pytest.warns(UserWarning, match="bare state_dict"), pytest.raises(
            CheckpointError, match=r"other\.pth: not a resnet18 state_dict \(\d+ weights missing, e\.g\. 'conv1\.weight'\)$"):
        train.build_model(tiny_config(tmp_path, tmp_path, pretrained=str(bare)), CLASSES)
    with pytest.raises(CheckpointError, match=r"lite_seg\.pth: a 'unet_efficientnet_lite0' segmenter; only a "
                                              r"unet_resnet18 segmenter's encoder can start a classifier"):
        train.build_model(tiny_config(tmp_path, tmp_path, pretrained=str(tmp_path / "lite_seg.pth")), CLASSES)


def test_build_segmenter_to_train_for_each_start(tmp_path: Path) -> None:
    """Every --pretrained start of a segmenter, with exact meta and loss: the Lite U-Net's ImageNet encoder,
    from scratch, a segmenter checkpoint of the same arch, a ResNet-18 classifier's backbone; and each refusal."""
    from torchvision.models import resnet18

    from evbattery.models.backbones import imagenet_state_dict
    from evbattery.models.checkpoint import save_checkpoint

    def build(**kw: Any) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
        return train.build_segmenter_to_train(tiny_config(tmp_path, tmp_path, input_type="masks", **kw))

    def meta(arch: str, pretrained: str) -> dict[str, Any]:
        return {"arch": arch, "task": "segmentation", "input_type": "images", "classes": ["background", "cell"],
                "pretrained": pretrained}

    stem = imagenet_state_dict("efficientnet_lite0")["conv_stem.weight"]
    for start in ("auto", "imagenet"):
        model, loss, m = build(segmenter_arch="unet_efficientnet_lite0", pretrained=start)
        assert type(loss) is SegmentationLoss and m == meta("unet_efficientnet_lite0", "imagenet encoder")
        assert torch.equal(model.encoder.state_dict()["conv_stem.weight"], stem)
    model, loss, m = build(segmenter_arch="unet_efficientnet_lite0", pretrained="none")
    assert m == meta("unet_efficientnet_lite0", "none") and not torch.equal(
        model.encoder.state_dict()["conv_stem.weight"], stem)
    for start in ("auto", "none"):
        model, loss, m = build(pretrained=start)
        assert type(model).__name__ == "UNetResNet18" and type(loss) is SegmentationLoss
        assert m == meta("unet_resnet18", "none")
    with pytest.raises(ValueError, match=r"^--pretrained imagenet: no offline ImageNet weights for a unet_resnet18 "
                                         r"segmenter; use --segmenter-arch unet_efficientnet_lite0, or auto"):
        build(pretrained="imagenet")

    seg = build_segmenter("unet_resnet18")
    save_checkpoint(tmp_path / "seg.pth", seg.state_dict(), meta("unet_resnet18", "none"))
    model, loss, m = build(pretrained=str(tmp_path / "seg.pth"))
    assert m == meta("unet_resnet18", str(tmp_path / "seg.pth")) and type(loss) is SegmentationLoss
    assert model.training and all(torch.equal(model.state_dict()[k], v) for k, v in seg.state_dict().items())
    with pytest.raises(CheckpointError, match=r"seg\.pth: a unet_resnet18 segmenter, but --segmenter-arch is "
                                              r"lraspp_mobilenet_v3_large$"):
        build(pretrained=str(tmp_path / "seg.pth"), segmenter_arch="lraspp_mobilenet_v3_large")
    save_checkpoint(tmp_path / "bad.pth", {"w": torch.zeros(1)}, meta("unet_resnet18", "none"))
    with pytest.raises(CheckpointError, match=r"bad\.pth: weights do not fit unet_resnet18"):
        build(pretrained=str(tmp_path / "bad.pth"))

    clf = resnet18(num_classes=3)
    save_checkpoint(tmp_path / "clf.pth", clf.state_dict(), {"arch": "resnet18", "task": "classification"})
    model, loss, m = build(pretrained=str(tmp_path / "clf.pth"))
    assert m == meta("unet_resnet18", f"encoder from {tmp_path / 'clf.pth'}") and type(loss) is SegmentationLoss
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], clf.state_dict()["layer4.1.conv2.weight"])
    for arch, seg_arch in (("resnet18", "lraspp_mobilenet_v3_large"), ("efficientnet_lite0", "unet_resnet18")):
        save_checkpoint(tmp_path / "c.pth", clf.state_dict(), {"arch": arch, "task": "classification"})
        with pytest.raises(CheckpointError, match=rf"c\.pth: a '{arch}' classifier can start only a unet_resnet18 "
                                                  r"segmenter's encoder \(--segmenter-arch unet_resnet18\)$"):
            build(pretrained=str(tmp_path / "c.pth"), segmenter_arch=seg_arch)
    save_checkpoint(tmp_path / "c.pth", {"fc.weight": torch.zeros(3, 512)}, {"arch": "resnet18",
                                                                               "task": "classification"})
    with pytest.raises(CheckpointError, match=r"c\.pth: not a ResNet-18 backbone: \d+ encoder weights missing"):
        build(pretrained=str(tmp_path / "c.pth"))


def test_precise_bn_uses_the_images_given_and_does_nothing_without_a_budget(tmp_path: Path) -> None:
    """recalibrate_bn(limit=0) leaves the statistics alone (update_bn over no batch would reset them to 0 / 1);
    one image is enough to recompute them; the device-resident cache passed as `images` is what it reads."""
    from evbattery.models.classifier import new_classifier

    data = make_toy_dataset(tmp_path / "data", n=(4, 2, 1), size=64)
    train_ds, _, _, _ = train.load_data(tiny_config(data, tmp_path, image_size=64))  # one photo: 2 x 2 at layer4
    model = new_classifier(3)

    def stats() -> torch.Tensor:
        return model.state_dict()["bn1.running_mean"].clone()

    train.recalibrate_bn(model, train_ds, limit=4, batch_size=4, fast=False)
    own = stats()
    assert own.abs().sum() > 0  # no longer the fresh model's zeros
    train.recalibrate_bn(model, train_ds, limit=0, batch_size=4, fast=False)
    assert torch.equal(stats(), own)
    train.recalibrate_bn(model, train_ds, limit=1, batch_size=4, fast=False)
    assert not torch.equal(stats(), own) and stats().abs().sum() > 0  # one photo's statistics, not a reset
    train.recalibrate_bn(model, train_ds, limit=4, batch_size=4, fast=False)
    assert torch.equal(stats(), own)  # seeded: the same 4 photos again
    train.recalibrate_bn(model, train_ds, limit=4, batch_size=4, fast=False, images=torch.zeros_like(train_ds.images))
    assert not torch.equal(stats(), own)


def test_evaluate_sums_every_batch_in_float64_and_keeps_bf16_off_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loss and accuracy over 200 batches of 1-3 photos: every batch counts, weighted by its size, and the sums are
    float64 (exactly what Python's float sum of the batch losses gives). bf16=False stays fp32 even on a CPU that
    has native bf16 (the capability is the stand-in: it decides autocast's default)."""
    from evbattery.core import devices
    from evbattery.data.transforms import normalize

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3)).eval()
    criterion = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    loader = [(torch.randint(0, 256, (k, 3, 4, 4), dtype=torch.uint8, generator=g),
               torch.randint(0, 3, (k,), generator=g)) for k in [1, 2, 3] * 66 + [1, 3]]
    losses, correct, n = [], 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(normalize(x, *train.IMAGENET_NORM))
            losses.append(float(criterion(logits, y) * len(x)))
            correct += int((logits.argmax(1) == y).sum())
            n += len(x)
    monkeypatch.setattr(devices, "bf16_supported", lambda device: True)
    got = evaluate(model, criterion, loader, fast=False, bf16=False)
    assert n == 400 and got["loss"] == sum(losses) / n and got["acc"] == correct / n
    assert len(got["y_true"]) == len(got["y_pred"]) == len(got["probs"]) == n
    right = next(b for b in range(0, 198, 3) if got["y_pred"][2 * b] == got["y_true"][2 * b])  # a lone photo
    lone = evaluate(model, criterion, loader[right:right + 1], fast=False, bf16=False)
    assert lone["acc"] == 1.0 and lone["loss"] == losses[right]  # not halved


class RedIsCell(torch.nn.Module):
    """A segmenter whose answer is known: a pixel is cell where its red channel is bright (logits -r, +r)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # evaluate() finds the device from a parameter

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": torch.stack([-x[:, 0], x[:, 0]], 1)}


def test_evaluate_scores_a_known_segmentation_over_every_batch() -> None:
    """IoU of the cell class pooled over the split (8 / 28, not a mean of per-batch IoUs), pixel accuracy over
    every pixel, and a lone photo's loss undivided."""
    from evbattery.data.transforms import normalize

    def batch(pred_rows: slice, true_rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
        x[:, 0, pred_rows] = 255
        y = torch.zeros(1, 4, 4, dtype=torch.long)
        y[:, true_rows] = 1
        return x, y

    model, criterion, norm = RedIsCell(), torch.nn.CrossEntropyLoss(), ([0.5] * 3, [0.5] * 3)
    first, second = batch(slice(0, 2), slice(1, 3)), batch(slice(0, 4), slice(0, 1))  # inter 4 + 4, union 12 + 16
    got = evaluate(model, criterion, [first, second], fast=False, norm=norm)
    assert got["iou"] == 8 / 28 and got["acc"] == (8 + 4) / 32 and "y_true" not in got
    one = evaluate(model, criterion, [first], fast=False, norm=norm)
    logits = model(normalize(first[0], *norm))["out"]
    assert one["loss"] == pytest.approx(float(criterion(logits, first[1]))) and one["iou"] == 4 / 12
    empty = batch(slice(0, 0), slice(0, 0))  # no cell predicted, none there: no IoU to report
    assert "iou" not in evaluate(model, criterion, [empty], fast=False, norm=norm)


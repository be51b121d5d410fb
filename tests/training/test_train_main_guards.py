"""What `train.main()` returns, saves and records, pinned exactly on tiny runs (CPU, 32 px, 1-2 epochs).

The runs are real: the real model, data, optimizer and schedule. Where a test needs to see what main() handed
to the training step (the batch augmentation, bf16), it wraps `train_one_epoch` and calls the real one.
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from toy_data import make_toy_dataset

from evbattery.core.config import DeviceError, checkpoint_name
from evbattery.core.devices import bf16_supported
from evbattery.data.layout import DatasetLayout
from evbattery.models.backbones import backbone_spec
from evbattery.models.checkpoint import CheckpointError
from evbattery.training.config import TrainConfig

UNUSABLE_DEVICE = "cuda:99"  # a valid form that no machine here has: resolve_device raises DeviceError


def tiny_config(data: Path, out: Path, **kw: Any) -> TrainConfig:
    """A 1-epoch, 32-px, batch-8, CPU, no-tracker TrainConfig writing under `out`."""
    base = {"data_dir": str(data), "model_dir": str(out / "model"), "runs_dir": str(out / "runs"), "epochs": 1,
            "batch_size": 8, "image_size": 32, "workers": 0, "tracker": "none", "pretrained": "none",
            "progress": False, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train / 4 val photos per class, 32 px (3 training steps of 8 per epoch)."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", n=(8, 4, 1), size=32)


def _spied_main(cfg: TrainConfig, mp: pytest.MonkeyPatch,
                calls: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """main(cfg), with the arguments of every train_one_epoch call recorded in `calls` (the real one runs)."""
    import evbattery.training.train as train

    real, calls = train.train_one_epoch, ([] if calls is None else calls)

    def recorded(*args: Any, **kwargs: Any) -> dict[str, float]:
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        return real(*args, **kwargs)

    mp.setattr(train, "train_one_epoch", recorded)
    return train.main(cfg), calls


def _black_stays_black(augment: Any) -> bool:
    """Whether the augmentation keeps a black frame black (no contrast jitter: the cutouts' rule)."""
    x = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 12:20, 12:20] = 200
    out, _ = augment(x, None, generator=torch.Generator().manual_seed(0))
    return bool((out[:, :, :3, :3] == 0).all())


def _load(path: Path | str) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


RUN_A = {"input_type": "images", "debias": "bg-swap", "swap_prob": 0.5, "bg_fade_epochs": 2, "epochs": 2,
         "scheduler": "onecycle", "warmup_pct": 0.3, "optimizer": "adamw", "weight_decay": 0.01, "fast": True}


@pytest.fixture(scope="module")
def run_a(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict, list[dict]]:
    """Two epochs of bg-swap training with a onecycle schedule; EVBATTERY_DEVICE names an unusable device,
    which cfg.device="cpu" overrides."""
    torch.set_num_threads(1)
    cfg = tiny_config(data, tmp_path_factory.mktemp("run_a"), **RUN_A)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVBATTERY_DEVICE", UNUSABLE_DEVICE)
        result, calls = _spied_main(cfg, mp)
    return cfg, result, calls


@pytest.mark.slow  # trains
def test_the_result_reports_the_best_epoch_of_the_history(run_a: tuple) -> None:
    cfg, result, _ = run_a
    assert set(result) == {"checkpoint", "best_epoch", "val", "run_dir", "start_epoch", "history"}
    assert result["checkpoint"] == str(Path(cfg.model_dir) / checkpoint_name("images_debiased"))
    assert result["start_epoch"] == 0
    hist = result["history"]
    assert [r["epoch"] for r in hist] == [0, 1]
    for r in hist:
        assert set(r) == {"epoch", "lr", "bg_alpha", "train/loss", "train/acc", "train/img_per_s", "val/loss",
                          "val/acc", "val/balanced_accuracy", "val/macro_f1", "val/ece"}, r
        assert all(math.isfinite(v) for v in r.values())
    assert [r["bg_alpha"] for r in hist] == pytest.approx([1 / 3, 2 / 3])  # fade over 2 epochs: (e+1)/3
    losses = [r["val/loss"] for r in hist]
    assert result["best_epoch"] == losses.index(min(losses))
    assert result["val"] == {k.removeprefix("val/"): v for k, v in hist[result["best_epoch"]].items()
                             if k.startswith("val/")}
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == Path(cfg.runs_dir) and "-images_debiased-" in run_dir.name
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == [{"step": r["epoch"], **r} for r in hist]
    summary = {k: v for k, v in result.items() if k != "history"}
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))


@pytest.mark.slow  # trains
def test_the_lr_follows_the_onecycle_schedule_per_step_and_weight_decay_reaches_adamw(run_a: tuple) -> None:
    cfg, result, calls = run_a
    steps = 3  # 24 training photos in batches of 8
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=cfg.lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=2 * steps, pct_start=0.3,
                                              cycle_momentum=False)
    expected = []
    for _ in range(2):
        expected.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            opt.step()
            ref.step()
    assert [r["lr"] for r in result["history"]] == pytest.approx(expected, rel=1e-9)
    assert expected[1] > 2 * expected[0]  # the warm-up moved on by a whole epoch of steps
    last = _load(Path(cfg.model_dir) / "last_images_debiased.pth")
    groups = last["optimizer"]["param_groups"]
    assert {g["weight_decay"] for g in groups} == {0.01}
    assert last["scheduler"]["last_epoch"] == 2 * steps
    assert {int(s["step"]) for s in last["optimizer"]["state"].values()} == {2 * steps}
    assert all(c["step_scheduler"] is not None for c in calls)


@pytest.mark.slow  # trains
def test_the_checkpoints_carry_the_run_s_metadata(run_a: tuple) -> None:
    cfg, result, calls = run_a
    best = _load(result["checkpoint"])
    last = _load(Path(cfg.model_dir) / "last_images_debiased.pth")
    layout = DatasetLayout(Path(cfg.data_dir))
    spec = backbone_spec("resnet18")
    for ckpt in (best, last):
        meta = ckpt["meta"]
        expected = {"name": "images_debiased", "arch": "resnet18", "head": "avgpool", "task": "classification",
                    "input_type": "images", "classes": list(layout.classes), "pretrained": "none",
                    "image_size": 32, "mean": list(spec.mean), "std": list(spec.std), "config": cfg.as_dict(),
                    "dataset_fingerprint": layout.fingerprint(), "dataset_root": str(layout.root),
                    "debias": {"method": "bg-swap", "swap_prob": 0.5, "synth_share": cfg.swap_synth_share},
                    "best_epoch": result["best_epoch"], "metrics": result["val"]}
        assert {k: meta.get(k) for k in expected} == expected
    hist = result["history"]
    assert last["epoch"] == 1 and last["best_epoch"] == result["best_epoch"]
    assert last["best_loss"] == min(r["val/loss"] for r in hist)
    assert last["history"] == hist and last["run_id"] == Path(result["run_dir"]).name
    assert last["rng"].dtype == torch.uint8 and last["rng"].shape == torch.get_rng_state().shape
    # the best checkpoint holds the best epoch's weights: the last one's when the last epoch was the best
    same = all(torch.equal(v, last["state_dict"][k]) for k, v in best["state_dict"].items())
    assert same == (result["best_epoch"] == 1)
    # fast: the model trains in channels_last
    assert best["state_dict"]["conv1.weight"].is_contiguous(memory_format=torch.channels_last)
    assert not best["state_dict"]["conv1.weight"].is_contiguous()
    config = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    bf16 = bf16_supported(torch.device("cpu"))
    assert config == json.loads(json.dumps({**cfg.as_dict(), "pretrained_weights": "none",
                                            "dataset_fingerprint": layout.fingerprint(), "world_size": 1,
                                            "bf16": bf16}))
    assert [c["bf16"] for c in calls] == [bf16, bf16] and [c["fast"] for c in calls] == [True, True]
    assert [c["epoch"] for c in calls] == [0, 1] and {c["progress"] for c in calls} == {False}
    assert {c["device"] for c in calls} == {torch.device("cpu")}
    assert all(c["norm"] == (list(spec.mean), list(spec.std)) for c in calls)
    assert {c["mask_loss_weight"] for c in calls} == {cfg.mask_loss_weight}
    # the reported val metrics are the best model's, evaluated as trained (channels_last, bf16 where supported)
    from torch.utils.data import DataLoader

    from evbattery.data.loaders import CachedDataset
    from evbattery.models.classifier import new_classifier
    from evbattery.training.train import evaluate

    model = new_classifier(3, "avgpool", "resnet18")
    model.load_state_dict(best["state_dict"])
    model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(CachedDataset(layout, "val", "images", 32), batch_size=8)
    va = evaluate(model, torch.nn.CrossEntropyLoss(), loader, fast=True, bf16=bf16,
                  norm=(list(spec.mean), list(spec.std)))
    assert result["val"]["loss"] == pytest.approx(va["loss"], rel=1e-6)
    # images get the contrast jitter, which lifts a black frame
    assert calls[0]["augment"] is not None and not _black_stays_black(calls[0]["augment"])


LITE0 = backbone_spec("efficientnet_lite0")
LITE0_NORM = (list(LITE0.mean), list(LITE0.std))  # [-1, 1], not ImageNet's


@pytest.fixture(scope="module")
def run_b(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict, list[dict]]:
    """Two cosine epochs of an EfficientNet-Lite0 on cutouts, fast off, at an lr of 1e-50: in float32 not one
    weight moves, so both epochs end with the same model and the same validation loss."""
    torch.set_num_threads(1)
    cfg = tiny_config(data, tmp_path_factory.mktemp("run_b"), input_type="cutouts", arch="efficientnet_lite0",
                      fast=False, lr=1e-50, epochs=2, limit_train=16)
    with pytest.MonkeyPatch.context() as mp:
        result, calls = _spied_main(cfg, mp)
    return cfg, result, calls


@pytest.mark.slow  # trains
def test_cutouts_are_augmented_without_contrast_and_fast_off_means_no_bf16(run_b: tuple) -> None:
    _, result, calls = run_b
    assert len(calls) == 2 and {c["bf16"] for c in calls} == {False} and {c["fast"] for c in calls} == {False}
    assert all(c["augment"] is not None and _black_stays_black(c["augment"]) for c in calls)
    assert all(c["norm"] == LITE0_NORM and c["step_scheduler"] is None for c in calls)
    assert json.loads((Path(result["run_dir"]) / "config.json").read_text())["bf16"] is False
    best = _load(result["checkpoint"])
    assert best["meta"]["debias"] is None and best["meta"]["name"] == "cutouts"
    assert (best["meta"]["mean"], best["meta"]["std"]) == LITE0_NORM
    assert best["state_dict"]["conv_stem.weight"].is_contiguous()  # fast off: no channels_last


@pytest.mark.slow  # trains
def test_a_tie_keeps_the_earlier_epoch_and_cosine_steps_once_per_epoch(run_b: tuple) -> None:
    cfg, result, _ = run_b
    hist = result["history"]
    assert all(set(r) == {"epoch", "lr", "train/loss", "train/acc", "train/img_per_s", "val/loss", "val/acc",
                          "val/balanced_accuracy", "val/macro_f1", "val/ece"} for r in hist)  # no bg fade
    assert hist[0]["val/loss"] == hist[1]["val/loss"]
    assert result["best_epoch"] == 0 and result["val"]["loss"] == hist[0]["val/loss"]
    assert [r["lr"] for r in hist] == pytest.approx([1e-50, 0.5e-50], rel=1e-9)
    last = _load(Path(cfg.model_dir) / "last_cutouts.pth")
    assert last["scheduler"]["last_epoch"] == 2 and last["best_epoch"] == 0


@pytest.mark.slow  # trains
def test_the_val_metrics_and_bn_statistics_are_those_of_the_saved_model(run_b: tuple) -> None:
    """Re-evaluating the best checkpoint on the val split gives the reported metrics; recomputing its BatchNorm
    statistics on the training cutouts (precise BN, with the Lite0's own normalisation) gives the saved ones."""
    from torch.utils.data import DataLoader

    from evbattery.core.metrics import classification_metrics
    from evbattery.data.loaders import CachedDataset
    from evbattery.models.classifier import new_classifier
    from evbattery.training.train import evaluate, recalibrate_bn

    cfg, result, _ = run_b
    saved = _load(result["checkpoint"])["state_dict"]
    model = new_classifier(3, "avgpool", "efficientnet_lite0")
    model.load_state_dict(saved)
    layout = DatasetLayout(Path(cfg.data_dir))
    val_ds = CachedDataset(layout, "val", "cutouts", 32)
    va = evaluate(model, torch.nn.CrossEntropyLoss(), DataLoader(val_ds, batch_size=8), fast=False, norm=LITE0_NORM)
    cm = classification_metrics(va["y_true"], va["y_pred"], va["probs"], list(layout.classes))
    expected = {"loss": va["loss"], "acc": va["acc"], "balanced_accuracy": cm["balanced_accuracy"],
                "macro_f1": cm["macro_f1"], "ece": cm["ece"]}
    assert result["val"] == pytest.approx(expected, rel=1e-6)

    train_ds = CachedDataset(layout, "train", "cutouts", 32, train=True, limit=16, seed=cfg.seed, batch_augment=True)
    bn = {k for k in saved if k.endswith(("running_mean", "running_var"))}
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
    recalibrate_bn(model, train_ds, cfg.precise_bn, cfg.batch_size, False, norm=LITE0_NORM)
    state = model.state_dict()
    assert len(bn) > 40
    for k in bn:
        torch.testing.assert_close(state[k], saved[k], rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.slow  # trains
def test_a_diverging_run_fails_with_one_line_and_no_batch_augment_means_none(data: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An lr of 1e30 sends every weight to inf/nan: no validation loss ever improves on inf, so there is no
    best model. The run says so (it used to return the path of a checkpoint it never wrote); the last
    checkpoint keeps the state for a look.

    Also: --tracker none starts no W&B even where W&B would run (offline here, no WANDB_MODE=disabled)."""
    from evbattery.training.train import TrainingDiverged

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("EVBATTERY_WANDB", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    cfg = tiny_config(data, tmp_path, input_type="cutouts", lr=1e30, batch_augment=False, limit_train=16)
    with pytest.raises(TrainingDiverged, match=r"no epoch had a finite validation loss .* lower --lr.*last_cutouts"):
        _spied_main(cfg, monkeypatch, calls := [])
    assert not (tmp_path / "wandb").exists() and not list((tmp_path / "runs").rglob("*wandb*"))
    assert calls[0]["augment"] is None  # the Dataset augments per sample; not a second time per batch
    assert not (Path(cfg.model_dir) / "best_model_cutouts.pth").exists()
    last = _load(Path(cfg.model_dir) / "last_cutouts.pth")
    assert math.isnan(last["history"][0]["val/loss"])
    assert last["best_epoch"] == -1 and last["meta"]["best_epoch"] == -1 and last["meta"]["metrics"] == {}
    assert last["best_loss"] == math.inf


def test_an_unusable_device_fails_before_any_work(data: Path, tmp_path: Path) -> None:
    from evbattery.training.train import main

    cfg = tiny_config(data, tmp_path, device=UNUSABLE_DEVICE)
    with pytest.raises(DeviceError, match=re.escape(UNUSABLE_DEVICE)):
        main(cfg)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "model").exists()


def test_a_probe_without_pretrained_weights_is_refused(data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """resnet18 with pretrained=auto and no cached ImageNet weights starts from random weights."""
    from evbattery.training.train import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    cfg = tiny_config(data, tmp_path, train_layers="head", pretrained="auto")
    with pytest.raises(CheckpointError, match=r"--train-layers head: no pretrained weights for resnet18 \(none"):
        main(cfg)


def test_resume_without_a_last_checkpoint_names_it(data: Path, tmp_path: Path) -> None:
    from evbattery.training.train import main

    cfg = tiny_config(data, tmp_path, resume=True)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "model" / "last_images.pth"))):
        main(cfg)


def _copy_run(cfg: TrainConfig, dest: Path, **kw: Any) -> TrainConfig:
    """run_a's checkpoints copied to dest, and its config there with resume on (and kw changed)."""
    shutil.copytree(cfg.model_dir, dest / "model")
    return tiny_config(Path(cfg.data_dir), dest, **{**RUN_A, "resume": True, **kw})


@pytest.mark.slow  # trains
def test_resuming_a_finished_run_keeps_its_history_run_id_and_best(run_a: tuple, tmp_path: Path) -> None:
    from evbattery.training.train import main

    cfg, first, _ = run_a
    with warnings.catch_warnings(record=True) as caught:  # and it closes its run files (metrics.jsonl)
        warnings.simplefilter("always")
        result = main(_copy_run(cfg, tmp_path))
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and "metrics.jsonl" in str(w.message)]
    assert result["start_epoch"] == 2 and result["history"] == first["history"]
    assert result["best_epoch"] == first["best_epoch"] and result["val"] == first["val"]
    assert Path(result["run_dir"]).name == Path(first["run_dir"]).name


@pytest.mark.slow  # trains
def test_resume_refuses_a_changed_config(run_a: tuple, tmp_path: Path) -> None:
    from evbattery.training.train import main

    cfg, _, _ = run_a
    with pytest.raises(ValueError, match=r"different config: lr: checkpoint 0\.001 vs now 0\.002"):
        main(_copy_run(cfg, tmp_path, lr=2e-3))


@pytest.mark.slow  # trains
def test_resume_refuses_a_last_checkpoint_of_other_classes_naming_it(run_a: tuple, tmp_path: Path) -> None:
    from evbattery.training.train import main

    cfg, _, _ = run_a
    resumed = _copy_run(cfg, tmp_path)
    last = tmp_path / "model" / "last_images_debiased.pth"
    ckpt = _load(last)
    ckpt["meta"]["classes"] = ckpt["meta"]["classes"][::-1]
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match=re.escape(f"{last}: classes")):
        main(resumed)


@pytest.mark.slow  # trains
def test_an_older_last_checkpoint_without_config_or_metrics_still_resumes(run_a: tuple, tmp_path: Path) -> None:
    """No config to compare (nothing to refuse) and no best metrics to carry on (an empty dict)."""
    from evbattery.training.train import main

    cfg, first, _ = run_a
    resumed = _copy_run(cfg, tmp_path)
    last = tmp_path / "model" / "last_images_debiased.pth"
    ckpt = _load(last)
    del ckpt["meta"]["config"], ckpt["meta"]["metrics"]
    torch.save(ckpt, last)
    result = main(resumed)
    assert result["start_epoch"] == 2 and result["history"] == first["history"]
    assert result["best_epoch"] == first["best_epoch"] and result["val"] == {}


@pytest.mark.slow  # fits a probe
def test_a_probe_is_one_pass_fitting_the_head_as_fit_linear_probe_does(data: Path, tmp_path: Path) -> None:
    """EfficientNet-Lite0's ImageNet weights (offline, from its package), frozen; one pass whatever --epochs."""
    from evbattery.data.loaders import CachedDataset
    from evbattery.models.backbones import classifier_head, imagenet_state_dict
    from evbattery.models.classifier import build_classifier
    from evbattery.training.probe import fit_linear_probe
    from evbattery.training.train import main

    cfg = tiny_config(data, tmp_path, arch="efficientnet_lite0", pretrained="auto", train_layers="head",
                      epochs=3, fast=False, probe_c=0.05, seed=3, limit_train=12)
    result = main(cfg)
    assert len(result["history"]) == 1 and result["best_epoch"] == 0
    saved = _load(result["checkpoint"])
    spec = backbone_spec("efficientnet_lite0")
    assert saved["meta"]["mean"] == list(spec.mean) and saved["meta"]["std"] == list(spec.std)
    imagenet = imagenet_state_dict("efficientnet_lite0")
    for k, v in imagenet.items():
        if not k.startswith("classifier."):
            assert torch.equal(saved["state_dict"][k], v), k
    # the same probe fitted by hand on the same photos: main passed the images, labels, norm, c and seed
    layout = DatasetLayout(data)
    train_ds = CachedDataset(layout, "train", "images", 32, train=True, limit=12, seed=3)
    val_ds = CachedDataset(layout, "val", "images", 32)
    model, _ = build_classifier(3, "auto", "avgpool", "efficientnet_lite0")
    ref = fit_linear_probe(model, classifier_head(model, "efficientnet_lite0"), train_ds.images, train_ds.labels,
                           val_ds.images, val_ds.labels, (list(spec.mean), list(spec.std)), 0.05, seed=3)
    head = classifier_head(model, "efficientnet_lite0")
    torch.testing.assert_close(saved["state_dict"]["classifier.weight"], head.weight.detach())
    torch.testing.assert_close(saved["state_dict"]["classifier.bias"], head.bias.detach())
    assert result["history"][0]["train/temperature"] == pytest.approx(ref["temperature"])
    assert result["history"][0]["train/loss"] == pytest.approx(ref["loss"])

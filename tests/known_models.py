"""Hand-built ResNet-18 checkpoints whose answers are known in advance (no training, no randomness).

`colour_reader_state_dict` turns a torchvision ResNet-18 into "mean colour -> class": conv1 and every
stride-2 block average their input channel by channel, the other blocks pass it through unchanged,
the global pool averages what is left, and fc scores class k by the mean of colour channel k. So:

  * as a photo model (input_type images) on a photo whose background is mostly one colour channel, it
    answers the class of that channel: a model that reads ONLY the background (when the cell is small
    and has no dominant channel of its own, or another one than the background);
  * as a cutout model (input_type cutouts) it sees the cell on the black CUTOUT_FILL, so it answers the
    class of the cell's colour channel and cannot see the background at all.

Inputs are taken as plain [0, 1] pixels (mean 0, std 1 in the metadata), so every activation is >= 0
and the ReLUs never cut anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet18

from evbattery.core.config import CLASSES
from evbattery.core.imageio import save_png
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetLayout
from evbattery.models.checkpoint import default_meta, save_checkpoint
from evbattery.models.registry import model_path

SCALE = 40.0  # fc gain: logit_k = SCALE * mean of channel k


def colour_reader_state_dict(scale: float = SCALE) -> dict[str, torch.Tensor]:
    """ResNet-18 (3 classes, avgpool head) weights: logit k = scale * spatial mean of input channel k."""
    model = resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, len(CLASSES))
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for k in sd:  # every BatchNorm the identity (eval mode): mean 0, var 1, weight 1, bias 0
        if k.endswith("running_var") or (k.endswith(".weight") and sd[k].ndim == 1):
            sd[k] = torch.ones_like(sd[k])
    for c in range(3):
        sd["conv1.weight"][c, c] = 1.0 / 49  # 7x7 box average, stride 2
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}."
            if p + "downsample.0.weight" in sd:  # stride 2: the branch averages, the shortcut is off
                for c in range(3):
                    sd[p + "conv1.weight"][c, c] = 1.0 / 9  # 3x3 box average, stride 2
                    sd[p + "conv2.weight"][c, c, 1, 1] = 1.0  # centre tap: identity
                sd[p + "downsample.1.weight"].zero_()
            else:  # stride 1: the branch is off (bn2 scales it to 0), the shortcut passes the input on
                sd[p + "bn2.weight"].zero_()
    for c in range(3):
        sd["fc.weight"][c, c] = scale
    return sd


def damaged_state_dict() -> dict[str, torch.Tensor]:
    """The colour reader with its class rows rotated: it answers class k+1 where the original answers k."""
    sd = colour_reader_state_dict()
    return sd | {"fc.weight": sd["fc.weight"].roll(1, dims=0), "fc.bias": sd["fc.bias"].roll(1, dims=0)}


def colour_meta(name: str, input_type: str, image_size: int = 48) -> dict:
    """Checkpoint metadata of a colour reader: plain [0, 1] pixels in, the three classes out."""
    return {**default_meta(name), "input_type": input_type, "image_size": image_size, "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0], "pretrained": "none", "metrics": {"val_acc": 1.0}, "best_epoch": 0,
            "dataset_fingerprint": "known-models", "debias": None}


def colour_predictor(state_dict: dict[str, torch.Tensor] | None = None, classes: list[str] | None = None,
                     image_size: int = 48):
    """A Predictor on the colour reader (or on `state_dict`), in memory; `classes` renames its output rows."""
    from evbattery.inference.predictor import Predictor
    from evbattery.models.classifier import new_classifier

    model = new_classifier(len(CLASSES))
    model.load_state_dict(state_dict or colour_reader_state_dict())
    meta = colour_meta("images", "images", image_size)
    return Predictor(model.eval(), {**meta, "classes": classes or meta["classes"]}, fast=False)


def write_colour_readers(model_dir: Path, image_size: int = 48,
                         names: tuple[tuple[str, str], ...] = (("images", "images"), ("cutouts", "cutouts"))) -> Path:
    """best_model_<name>.pth colour readers in model_dir (name, input_type pairs); returns model_dir."""
    model_dir.mkdir(parents=True, exist_ok=True)
    sd = colour_reader_state_dict()
    for name, input_type in names:
        save_checkpoint(model_path(model_dir, name), sd, colour_meta(name, input_type, image_size))
    return model_dir


def colour(k: int, high: int = 210, low: int = 30) -> np.ndarray:
    """An RGB colour whose channel k dominates."""
    c = np.full(3, low, np.uint8)
    c[k] = high
    return c


def photo(bg_class: int, cell_class: int, size: int = 48, box: tuple[int, int, int, int] | None = None,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(photo, mask): a background of colour(bg_class) with light noise, a square cell of colour(cell_class).

    The cell covers about 8 % of the frame (as real cells do), so the photo's mean colour is the
    background's and the cutout's mean colour is the cell's.
    """
    rng = np.random.default_rng(seed)
    img = (colour(bg_class).astype(int) + rng.integers(-8, 9, (size, size, 3))).clip(0, 255).astype(np.uint8)
    s = size * 7 // 24  # side: (7/24)^2 ~ 8.5 % of the frame
    if box is None:
        y0, x0 = (int(v) for v in rng.integers(2, size - s - 2, 2))
        box = (y0, y0 + s, x0, x0 + s)
    mask = np.zeros((size, size), np.uint8)
    mask[box[0]:box[1], box[2]:box[3]] = 255
    img[mask > 0] = colour(cell_class)
    return img, mask


FAMILIES = ("red", "green", "blue")  # background family f has colour channel f


def write_colour_dataset(root: Path, per_group: int, balanced: bool, splits: tuple[str, ...] = ("test",)) -> Path:
    """Colour photos in the folder contract (PNG images, masks, cutouts, a card); the cell's colour is its class's.

    balanced=False: every photo's background is its class's own colour (background == class).
    balanced=True: every class sits on every family equally often (rho = 0, as the generator's test split), and
    the card records home families (class k's home is family k).
    """
    layout = DatasetLayout(root)
    meta, n = {}, 0
    for split in splits:
        for k, cls in enumerate(CLASSES):
            for f in (range(3) if balanced else [k]):
                for i in range(per_group):
                    img, mask = photo(f, k, seed=n)
                    n += 1
                    stem = f"{cls[:3]}_{split}_{FAMILIES[f]}_{i}"
                    save_png(img, layout.image_path(split, cls, stem, ext=".png"))
                    save_png(mask, layout.mask_path(split, cls, stem))
                    save_png(make_cutout(img, mask), layout.cutout_path(split, cls, stem))
                    meta[f"{split}/{cls}/{stem}"] = {"class": cls, "background": FAMILIES[f]}
    card = {"source": {"kind": "known-colours"}, "images": meta}
    if balanced:
        card["home_families"] = {cls: [FAMILIES[k]] for k, cls in enumerate(CLASSES)}
    layout.write_card(card)
    return root

"""Checkpoint contract: one file = {"format", "state_dict", "meta", ["novelty"], [resume state]}.

Loadable with torch.load(weights_only=True): the metadata holds only plain types (str, int, float,
bool, list, dict, None). Writes are atomic (temp file + rename). A bare torchvision-style
state_dict still loads, with default metadata and a warning.

meta keys written by training (readers use .get with defaults):
  name            model name, e.g. "images", "cutouts", "images_debiased", "segmenter"
  arch            "resnet18" | "lraspp_mobilenet_v3_large"
  task            "classification" | "segmentation"
  input_type      "images" | "cutouts"
  classes         class names in index order
  image_size      int (square input side)
  mean, std       normalisation
  pretrained      what the weights started from ("none", "imagenet", a path)
  config          training config (dict)
  best_epoch, metrics      validation metrics of the saved epoch
  dataset_fingerprint, dataset_root
  versions        {"torch": ..., "torchvision": ..., "evbattery": ...}
  created         ISO-8601 UTC time
  debias          null or a dict naming the method
  novelty         a classifier's novelty score (models/novelty.py): what it was fitted on, or why it was skipped;
                  its tensors are the checkpoint's top-level "novelty" entry
"""

from __future__ import annotations

import io
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from evbattery import __version__
from evbattery.core.config import CLASSES, DEFAULT_IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD
from evbattery.core.io import atomic_write_bytes

FORMAT = "evbattery.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or of another architecture / class list."""


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint."""
    import torchvision

    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "evbattery": __version__}


def plain(obj: Any) -> Any:
    """Metadata as plain JSON types (Paths, numpy scalars, TorchVersion -> str/float), so that
    torch.load(weights_only=True) accepts it."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def now_iso() -> str:
    """Current UTC time, ISO-8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
                    **extra: Any) -> None:
    """Atomically write {"format", "state_dict", "meta", **extra} (extra: optimizer state etc.)."""
    meta = plain({"versions": library_versions(), "created": now_iso(), **meta})
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                "meta": meta, **extra}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def default_meta(name: str = "images") -> dict[str, Any]:
    """Metadata assumed for a bare state_dict (seed checkpoints)."""
    return {"name": name, "arch": "resnet18", "task": "classification",
            "input_type": "cutouts" if "cutout" in name else "images",
            "classes": list(CLASSES), "image_size": DEFAULT_IMAGE_SIZE,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "pretrained": "unknown",
            "debias": None}


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only=True); a bare state_dict gets default metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "state_dict" in obj and "meta" in obj:
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        name = path.stem.removeprefix("best_model_")
        warnings.warn(f"{path}: bare state_dict without metadata; assuming defaults {default_meta(name)}",
                      stacklevel=2)
        return {"format": "bare", "state_dict": obj, "meta": default_meta(name)}
    raise CheckpointError(f"{path}: unrecognised checkpoint layout (expected an evbattery checkpoint or a state_dict)")


def normalisation(meta: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(mean, std) a model's inputs are normalised with: the checkpoint's own, else its backbone's (seed
    checkpoints: ResNet-18, ImageNet's)."""
    if meta.get("mean") and meta.get("std"):
        return list(meta["mean"]), list(meta["std"])
    from evbattery.models.backbones import BACKBONES

    spec = BACKBONES.get(meta.get("arch", "resnet18"))
    return (list(spec.mean), list(spec.std)) if spec else (list(IMAGENET_MEAN), list(IMAGENET_STD))

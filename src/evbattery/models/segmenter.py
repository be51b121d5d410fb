"""Cell segmenter, trained on images -> masks: a U-Net on a ResNet-18 encoder (models/unet.py, the default)
or torchvision's LR-ASPP MobileNetV3-Large (the first one; predicts on a 1/8-resolution grid).

This module builds the networks and their loss; evbattery.inference.segmenter.Segmenter runs them.
Training goes through evbattery.training.train.main with input_type="masks" (same loop as the classifiers).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from evbattery.models.archs import SEGMENTER_ARCHS
from evbattery.models.checkpoint import CheckpointError

ARCHS = SEGMENTER_ARCHS
ARCH = ARCHS[0]  # the default for new segmenters; checkpoints name theirs in meta["arch"]
NUM_CLASSES = 2  # background, cell


def build_segmenter(arch: str = ARCH) -> nn.Module:
    """A segmenter with 2 output classes, random init (no downloads). Its forward returns {"out": logits}."""
    if arch == "unet_resnet18":
        from evbattery.models.unet import UNetResNet18

        return UNetResNet18(NUM_CLASSES)
    if arch == "unet_efficientnet_lite0":
        from evbattery.models.unet import UNetLite0

        return UNetLite0(NUM_CLASSES)
    if arch == "u2netp":
        from evbattery.models.u2netp import SalientSegmenter

        return SalientSegmenter()
    if arch != "lraspp_mobilenet_v3_large":
        raise ValueError(f"segmenter arch {arch!r}; expected one of {', '.join(ARCHS)}")
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    # torchvision's MobileNetV3 uses BatchNorm momentum 0.01, tuned for long ImageNet schedules. Trained
    # from scratch for a few hundred steps, the running statistics then stay near their init and the
    # eval-mode network predicts background everywhere (measured: IoU 0.0 in eval vs 0.49 in train
    # mode after 3 epochs). The PyTorch default 0.1 lets them follow the weights.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model


class SegmentationLoss(nn.Module):
    """Cross-entropy plus soft Dice on the cell class (Dice keeps small cells from being ignored)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # (N,2,H,W), (N,H,W)
        ce = nn.functional.cross_entropy(logits, target)
        p = logits.float().softmax(1)[:, 1]
        t = target.float()
        dice = 1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
        return ce + dice.mean()


def segmenter_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild the segmenter from a loaded checkpoint dict, checking task and architecture."""
    meta = ckpt["meta"]
    arch = meta.get("arch")
    if arch not in ARCHS or meta.get("task") != "segmentation":
        raise CheckpointError(f"{source}: not a segmenter checkpoint (arch {arch!r}, task {meta.get('task')!r}; "
                              f"expected one of {', '.join(ARCHS)} and 'segmentation')")
    model = build_segmenter(arch)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not fit {arch}: {str(e).splitlines()[0]}") from e
    return model.eval()

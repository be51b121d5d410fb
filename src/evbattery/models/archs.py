"""The names of every network this package builds, free of torch so that configs and the CLI can list them."""

from __future__ import annotations

# Classifier backbones (models/backbones.py builds them; a checkpoint names its own in meta["arch"]).
CLASSIFIER_ARCHS: tuple[str, ...] = ("resnet18", "efficientnet_lite0", "efficientnet_lite2")
# How the backbone's last feature map becomes one vector: global average pool, or the mask-guided
# attention pool of models/mask_attention.py (ResNet-18 only; checkpoint meta "head", absent = avgpool).
HEADS: tuple[str, ...] = ("avgpool", "mask_attention")
# Segmenters: U-Net on a ResNet-18 encoder (default), U-Net on an EfficientNet-Lite0 encoder (starts from
# ImageNet weights offline), torchvision's LR-ASPP MobileNetV3-Large, or U^2-Net-p, a salient-object network
# trained on real photos (weights offline, models/u2netp.py).
SEGMENTER_ARCHS: tuple[str, ...] = ("unet_resnet18", "unet_efficientnet_lite0", "lraspp_mobilenet_v3_large", "u2netp")

"""U-Nets on a ResNet-18 or an EfficientNet-Lite0 encoder: the segmenters that predict at full resolution.

Why not only LR-ASPP: LR-ASPP predicts on a 1/8-resolution grid and upsamples it, which caps the IoU a
perfect grid prediction can reach on these small cells (scripts/segmenter_iou_ceiling.py: ~0.90 at 128 px).
Here the decoder climbs back through the encoder's stride-16/8/4/2 features (skip connections, as in
Ronneberger et al. 2015) to a full-resolution map, so the resolution sets no ceiling. The encoder has the
classifiers' exact ResNet-18 layout, so it can start from a trained classifier's backbone
(`load_encoder`), the offline stand-in for ImageNet weights.

    model = UNetResNet18(num_classes=2); model(x)["out"]  # (N, 2, H, W) logits, like torchvision's models

UNetLite0 takes EfficientNet-Lite0's five feature maps (timm's features_only) as its skips, so its encoder can
start from the ImageNet weights that install offline: a segmenter that has seen real photos' edges and textures
finds cells in real photos, where one trained from scratch on synthetic photos does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """Upsample x2 (bilinear), concatenate the skip feature, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(cin + cskip, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], 1))


class UNetResNet18(nn.Module):
    """ResNet-18 encoder (strides 2..32) + a light U-Net decoder back to the input resolution."""

    ENCODER = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        from torchvision.models import resnet18

        r = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.up4 = UpBlock(512, 256, 128)  # -> stride 16
        self.up3 = UpBlock(128, 128, 64)   # -> stride 8
        self.up2 = UpBlock(64, 64, 48)     # -> stride 4
        self.up1 = UpBlock(48, 64, 32)     # -> stride 2 (skip: the stem, before max-pooling)
        self.head = nn.Sequential(conv_bn_relu(32 + 3, 16), nn.Conv2d(16, num_classes, 1))  # full resolution

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s2 = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        s32 = self.layer4(s16)
        d = self.up1(self.up2(self.up3(self.up4(s32, s16), s8), s4), s2)
        d = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": self.head(torch.cat([d, x], 1))}

    def load_encoder(self, state_dict: Mapping[str, torch.Tensor]) -> int:
        """Copy a ResNet-18 classifier's backbone weights (its fc is not used); returns the tensors copied.
        Raises ValueError if the state_dict lacks any encoder weight."""
        own = {k: v for k, v in self.state_dict().items() if k.split(".")[0] in self.ENCODER}
        missing = [k for k in own if k not in state_dict]
        if missing:
            raise ValueError(f"not a ResNet-18 backbone: {len(missing)} encoder weights missing, e.g. {missing[0]!r}")
        bad = [k for k in own if state_dict[k].shape != own[k].shape]
        if bad:
            raise ValueError(f"not a ResNet-18 backbone: {bad[0]!r} has shape {tuple(state_dict[bad[0]].shape)}, "
                             f"expected {tuple(own[bad[0]].shape)}")
        self.load_state_dict({k: state_dict[k] for k in own}, strict=False)
        return len(own)


class UNetLite0(nn.Module):
    """EfficientNet-Lite0 encoder (timm features_only, strides 2..32) + the same light U-Net decoder."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        import timm

        from evbattery.models.backbones import LITE_TF_COMPAT

        self.encoder = timm.create_model("efficientnet_lite0", features_only=True, pretrained=False,
                                         **LITE_TF_COMPAT)
        c2, c4, c8, c16, c32 = self.encoder.feature_info.channels()  # 16, 24, 40, 112, 320
        self.up4 = UpBlock(c32, c16, 128)
        self.up3 = UpBlock(128, c8, 64)
        self.up2 = UpBlock(64, c4, 48)
        self.up1 = UpBlock(48, c2, 32)
        self.head = nn.Sequential(conv_bn_relu(32 + 3, 16), nn.Conv2d(16, num_classes, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s2, s4, s8, s16, s32 = self.encoder(x)
        d = self.up1(self.up2(self.up3(self.up4(s32, s16), s8), s4), s2)
        d = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": self.head(torch.cat([d, x], 1))}

    def load_imagenet_encoder(self) -> int:
        """Start the encoder from EfficientNet-Lite0's ImageNet weights (offline package); returns tensors copied."""
        from evbattery.models.backbones import imagenet_state_dict

        sd = imagenet_state_dict("efficientnet_lite0")
        own = self.encoder.state_dict()
        self.encoder.load_state_dict({k: sd[k] for k in own})  # every encoder tensor is in the classifier's
        return len(own)

"""ResNet-18 with a mask-guided attention pool in place of global average pooling (`--head mask_attention`).

Why: the image model's errors sit in small cells (README, "Where the gap comes from"). A cell covering 2 % of
a 224-px frame is about one of layer4's 7 x 7 positions, so global average pooling hands the classifier one
part cell and 48 parts background and distractors. Here a 1x1 convolution scores every layer4 position,
and the pooled feature is the sigmoid-weighted mean of the positions it picks. In training the scores also
learn the cell's mask (binary cross-entropy against the mask area-averaged to the layer4 grid), so the pool
is taught where the cell is; at inference the model takes a raw photo, no mask and no segmenter.

The backbone is torchvision's ResNet-18 with its own parameter names (`conv1` ... `layer4`, `fc`), so
Grad-CAM's target layer, `--pretrained` starts (a segmenter's encoder, another classifier) and ONNX export
work unchanged; the only new weights are `attn.weight` / `attn.bias`. Like torchvision's GoogLeNet with its
auxiliary logits, forward returns MaskAttentionOutputs(logits, mask_logits) in training mode and the logits
alone in eval mode.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock, ResNet

HEAD = "mask_attention"
EPS = 1e-6


class MaskAttentionOutputs(NamedTuple):
    logits: torch.Tensor       # (N, classes)
    mask_logits: torch.Tensor  # (N, 1, h, w): layer4-grid scores of "this position is cell"


class MaskAttentionResNet(ResNet):
    """ResNet-18 whose pooled feature is the attention-weighted mean of layer4's positions."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.attn = nn.Conv2d(512 * BasicBlock.expansion, 1, kernel_size=1)
        # Start with a flat attention map (all positions weighted 0.5): the pool begins as average pooling.
        nn.init.zeros_(self.attn.weight)
        nn.init.zeros_(self.attn.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def _forward_impl(self, x: torch.Tensor):  # type: ignore[override]
        f = self.features(x)
        mask_logits = self.attn(f)
        a = torch.sigmoid(mask_logits)
        pooled = (f * a).sum((2, 3)) / (a.sum((2, 3)) + EPS)
        logits = self.fc(pooled)
        return MaskAttentionOutputs(logits, mask_logits) if self.training else logits


def mask_target(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N,S,S) 0/1 or 0/255 masks -> (N,1,h,w) float share of each grid cell covered by the cell."""
    m = masks.float()
    if m.max() > 1:
        m = m / 255.0
    return F.adaptive_avg_pool2d(m[:, None], size)


def mask_attention_loss(mask_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the attention scores against the mask area-averaged to their grid."""
    target = mask_target(masks, tuple(mask_logits.shape[-2:]))
    return F.binary_cross_entropy_with_logits(mask_logits.float(), target)

"""Cell segmenter, trained on images -> masks: a U-Net on a ResNet-18 encoder (models/unet.py, the default)
or torchvision's LR-ASPP MobileNetV3-Large (the first one; predicts on a 1/8-resolution grid).

The API and the bias suite use it to make cutouts when no mask is given:
    seg = Segmenter.from_checkpoint("model/segmenter.pth"); mask = seg.predict_mask(photo)  # HxW 0/255
Training goes through evbattery.training.train.main with input_type="masks" (same loop as the classifiers).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

from evbattery.data.transforms import normalize, resize_uint8
from evbattery.models.checkpoint import CheckpointError, load_checkpoint

ARCHS = ("unet_resnet18", "lraspp_mobilenet_v3_large")
ARCH = ARCHS[0]  # the default for new segmenters; checkpoints name theirs in meta["arch"]
NUM_CLASSES = 2  # background, cell


def build_segmenter(arch: str = ARCH) -> nn.Module:
    """A segmenter with 2 output classes, random init (no downloads). Its forward returns {"out": logits}."""
    if arch == "unet_resnet18":
        from evbattery.models.unet import UNetResNet18

        return UNetResNet18(NUM_CLASSES)
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


class Segmenter:
    """Predicts cell masks for photos. Thread-safe: inference holds a lock.

    device: auto | cpu | cuda | cuda:N or a torch.device (None: EVBATTERY_DEVICE, default auto); the model lives
    there, with channels_last and bf16 autocast where the device has native bf16 (bf16=None) on CUDA.
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], source: str = "",
                 device: str | torch.device | None = None, bf16: bool | None = None) -> None:
        from evbattery.devices import bf16_supported, is_cuda, resolve_device

        self.device = resolve_device(device)
        # On the CPU the segmenter keeps its fp32 path (its masks are what the CPU tests pin); on CUDA bf16.
        self.bf16 = (is_cuda(self.device) and bf16_supported(self.device)) if bf16 is None else bf16
        self.model = model.eval().to(self.device)
        if is_cuda(self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.meta = meta
        self.source = source
        self.image_size = int(meta.get("image_size", 224))
        self.mean = list(meta.get("mean", (0.485, 0.456, 0.406)))
        self.std = list(meta.get("std", (0.229, 0.224, 0.225)))
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | torch.device | None = None) -> Segmenter:
        """Load model/segmenter.pth (weights_only, to the CPU) onto `device`."""
        ckpt = load_checkpoint(path, map_location="cpu")
        return cls(segmenter_from_checkpoint(ckpt, str(path)), ckpt["meta"], source=str(path), device=device)

    @torch.inference_mode()
    def predict_masks(self, images: Sequence[np.ndarray], batch_size: int | None = None) -> list[np.ndarray]:
        """HxWx3 uint8 photos -> HxW uint8 masks (0/255), each at its photo's size (batches of 16 on the CPU,
        128 on a GPU)."""
        batch_size = batch_size or (128 if self.device.type == "cuda" else 16)
        out: list[np.ndarray] = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            from evbattery.devices import autocast, channels_last

            batch = torch.stack([resize_uint8(im, self.image_size) for im in chunk]).to(self.device)
            x = normalize(batch, self.mean, self.std)
            if self.device.type == "cuda":
                x = channels_last(x)
            with self._lock, autocast(self.device, enabled=self.bf16):
                cell = (self.model(x)["out"].argmax(1).to(torch.uint8) * 255).cpu()  # (N,S,S)
            for im, m in zip(chunk, cell, strict=True):
                h, w = im.shape[:2]
                m = F.resize(m[None], [h, w], interpolation=F.InterpolationMode.NEAREST)[0]
                out.append(m.numpy().astype(np.uint8))
        return out

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        """One HxWx3 uint8 photo -> HxW uint8 mask (0/255) at the photo's size."""
        return self.predict_masks([image])[0]

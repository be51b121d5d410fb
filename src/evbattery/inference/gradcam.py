"""Grad-CAM heatmaps (Selvaraju et al. 2017) for a Predictor's classifier, via the grad-cam library.

Maps are computed on the backbone's last feature map (ResNet-18: layer4) at the model's input size from the same preprocessing the Predictor
uses, in fp32 (autocast off), and returned in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from evbattery.data.transforms import letterbox_box
from evbattery.inference.predictor import Predictor
from evbattery.models.backbones import cam_target_layer


def cam_layer(model: torch.nn.Module, meta: dict) -> torch.nn.Module:
    """The layer Grad-CAM hooks: the last block of ResNet-18's layer4 (also under the mask-attention head), or
    the backbone's registered CAM layer (EfficientNet-Lite0: the activated 1280-channel head map)."""
    arch = meta.get("arch", "resnet18")
    if arch == "resnet18":
        return model.layer4[-1]
    return cam_target_layer(model, arch)


def gradcam_maps(predictor: Predictor, batch_uint8: torch.Tensor,
                 target_classes: Sequence[int] | None = None) -> np.ndarray:
    """(N,3,S,S) uint8 -> (N,S,S) float32 Grad-CAM maps in [0,1] for the target (default: predicted) class."""
    if predictor.model is None:
        raise ValueError(f"{predictor.source}: Grad-CAM needs a torch model; this Predictor runs {predictor.backend}")
    model = predictor.model.float()
    x = predictor.to_input(batch_uint8).contiguous()
    targets = None if target_classes is None else [ClassifierOutputTarget(int(c)) for c in target_classes]
    with torch.enable_grad(), GradCAM(model=model, target_layers=[cam_layer(model, predictor.meta)]) as cam:
        maps = cam(input_tensor=x, targets=targets)  # (N, S, S), each map min-max scaled to [0, 1]
    return np.nan_to_num(maps.astype(np.float32))


def overlay(image_uint8: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heatmap over an HxWx3 uint8 image -> HxWx3 uint8. A square cam of a letterboxed input is cropped to the
    photo's part of the square, then resized to the image."""
    from PIL import Image

    h, w = image_uint8.shape[:2]
    if cam.shape != (h, w) and cam.shape[0] == cam.shape[1] and h != w:
        top, left, ch, cw = letterbox_box(h, w, cam.shape[0])
        cam = cam[top:top + ch, left:left + cw]
    if cam.shape != (h, w):
        cam = np.asarray(Image.fromarray((cam * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR),
                         dtype=np.float32) / 255.0
    return show_cam_on_image(image_uint8.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=1 - alpha)


def energy_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total energy (sum of values) that falls inside the mask (same HxW; mask >= 128).

    1.0 = all attention on the cell, 0.0 = all on the background; NaN for an all-zero map.
    """
    if cam.shape != mask.shape:
        raise ValueError(f"cam {cam.shape} and mask {mask.shape} differ in size")
    total = float(cam.sum())
    if total <= 0:
        return float("nan")
    return float(cam[mask >= 128].sum()) / total

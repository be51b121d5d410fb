"""The segmenter at run time: photos in, cell masks out, at each photo's own size.

    seg = Segmenter.from_checkpoint("model/segmenter.pth"); mask = seg.predict_mask(photo)  # HxW 0/255

The API, the predict CLI, evaluation and the bias suite all make their masks here, with the normalisation the
checkpoint names (like the classifiers' Predictor).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evbattery.core.devices import autocast, bf16_supported, channels_last, is_cuda, resolve_device
from evbattery.data.transforms import normalize, resize_uint8, unletterbox_mask
from evbattery.models.checkpoint import load_checkpoint, normalisation
from evbattery.models.segmenter import segmenter_from_checkpoint


class Segmenter:
    """Predicts cell masks for photos. Thread-safe: inference holds a lock.

    device: auto | cpu | cuda | cuda:N or a torch.device (None: EVBATTERY_DEVICE, default auto); the model lives
    there, with channels_last and bf16 autocast where the device has native bf16 (bf16=None) on CUDA.
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], source: str = "",
                 device: str | torch.device | None = None, bf16: bool | None = None) -> None:
        self.device = resolve_device(device)
        # On the CPU the segmenter keeps its fp32 path (its masks are what the CPU tests pin); on CUDA bf16.
        # channels_last everywhere: on a 2-core AVX2 CPU 27.4 vs 20.9 photos/s, masks identical (160 photos).
        self.bf16 = (is_cuda(self.device) and bf16_supported(self.device)) if bf16 is None else bf16
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.graph = self.model  # what an ONNX Runtime session is made of (inference.cpu_onnx)
        self.meta = meta
        self.source = source
        self.image_size = int(meta.get("image_size", 224))
        self.mean, self.std = normalisation(meta)
        self.backend = "torch"
        self._session: Any = None  # ONNX Runtime session once inference.cpu_onnx.attach_onnx_runtime attached one
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
            batch = torch.stack([resize_uint8(im, self.image_size) for im in chunk]).to(self.device)
            x = normalize(batch, self.mean, self.std)
            if self._session is not None:
                logits = torch.from_numpy(self._session.run(None, {"input": x.numpy()})[0])
            else:
                with self._lock, autocast(self.device, enabled=self.bf16):
                    logits = self.model(channels_last(x))["out"]
            # cell where its logit beats the background's (argmax over 2 classes, ties to background); argmax(1)
            # itself took 60 ms per batch of 16 at 160 px, a sixth of the network's time in ONNX Runtime
            cell = ((logits[:, 1] > logits[:, 0]).to(torch.uint8) * 255).cpu()  # (N,S,S)
            for im, m in zip(chunk, cell, strict=True):
                out.append(unletterbox_mask(m, *im.shape[:2]).numpy().astype(np.uint8))
        return out

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        """One HxWx3 uint8 photo -> HxW uint8 mask (0/255) at the photo's size."""
        return self.predict_masks([image])[0]


def load_segmenter(path: Path | str, device: str | torch.device | None = None) -> Segmenter | None:
    """The segmenter at path on `device`, or None when there is no file there (cutout models then need a mask)."""
    return Segmenter.from_checkpoint(path, device=device) if Path(path).is_file() else None

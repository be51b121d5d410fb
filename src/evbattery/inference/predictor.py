"""Predictor: a classifier checkpoint + the one preprocessing path + a backend (torch or ONNX Runtime).

Evaluation, the predict CLI and the API all call `Predictor.predict`, so the numbers agree. Where the checkpoint
carries a novelty score (models/novelty.py), every prediction also says how far the photo's features lie from
the training photos', from the same forward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evbattery.core.devices import autocast, bf16_supported, resolve_device
from evbattery.data.transforms import normalize, pad_fill, resize_uint8
from evbattery.models.backbones import logits_and_features
from evbattery.models.checkpoint import CheckpointError, load_checkpoint, normalisation
from evbattery.models.classifier import classifier_from_checkpoint
from evbattery.models.novelty import NoveltyScore, novelty_from_checkpoint

__all__ = ["Prediction", "Predictor"]


@dataclass
class Prediction:
    """One model's answer for one image."""

    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_used: str
    logits: list[float] = field(default_factory=list)
    # distance of the photo's features from the training photos', 1.0 = the val photos' 99th percentile; None when
    # the model has no novelty score (models/novelty.py)
    novelty: float | None = None

    @property
    def familiar(self) -> bool | None:
        """False when the photo is further from the training photos than 99 % of held-out ones; None: unknown."""
        return None if self.novelty is None else self.novelty <= 1.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (seed shape: predicted_class, confidence, probabilities, model_used; then novelty)."""
        return {"predicted_class": self.predicted_class, "confidence": self.confidence,
                "probabilities": self.probabilities, "model_used": self.model_used,
                "novelty": self.novelty, "familiar": self.familiar}


class Predictor:
    """Wraps one classifier. Thread-safe: torch inference holds a lock per model.

    device: auto | cpu | cuda | cuda:N or a torch.device (None: EVBATTERY_DEVICE, default auto). The model lives
    there, inputs go there, logits come back as float32 numpy. bf16 autocast by default where the device has
    native bf16 (CUDA; CPUs with AVX512-BF16 / AMX).
    """

    def __init__(self, model: torch.nn.Module | None, meta: dict[str, Any], fast: bool = True,
                 bf16: bool | None = None, source: str = "", device: str | torch.device | None = None,
                 novelty: NoveltyScore | None = None) -> None:
        self.meta = meta
        self.source = source
        self.name: str = meta.get("name", "model")
        self.input_type: str = meta.get("input_type", "images")
        self.classes: list[str] = list(meta["classes"])
        self.image_size: int = int(meta.get("image_size", 224))
        self.mean, self.std = normalisation(meta)
        # fast: channels_last memory format (helps on every CPU measured here, and on GPUs); bf16 autocast
        # only where the device has native bf16 (on AVX2-only CPUs bf16 is ~20x slower than fp32).
        self.device = resolve_device(device)
        self.fast = fast
        self.bf16 = (bf16_supported(self.device) if bf16 is None else bf16) and fast
        self.backend = "torch"
        # None for an ONNX-backed Predictor: logits() runs the session; Grad-CAM and export need torch.
        self.model = model.eval().to(self.device) if model is not None else None
        if self.fast and self.model is not None:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The model split at its head (same weights): logits and the features the novelty score reads, one pass.
        self.graph: torch.nn.Module | None = self.model
        if self.model is not None and novelty is not None:
            self.graph = logits_and_features(self.model, meta.get("arch", "resnet18"))
            if novelty.means.shape[1] != self.graph.head.in_features:
                raise CheckpointError(f"{source}: its novelty score reads {novelty.means.shape[1]} features, the "
                                      f"model's head {self.graph.head.in_features}")
        self.novelty = novelty
        self._session: Any = None  # ONNX Runtime session when backend == "onnx"
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: Path | str, fast: bool = True, bf16: bool | None = None,
                        device: str | torch.device | None = None) -> Predictor:
        """Load a classifier checkpoint (weights_only, to the CPU) into a torch-backed Predictor on `device`."""
        ckpt = load_checkpoint(path, map_location="cpu")
        return cls(classifier_from_checkpoint(ckpt, str(path)), ckpt["meta"], fast=fast, bf16=bf16,
                   source=str(path), device=device, novelty=novelty_from_checkpoint(ckpt))

    @classmethod
    def from_onnx(cls, path: Path | str, meta: dict[str, Any] | None = None, threads: int = 2) -> Predictor:
        """An ONNX Runtime-backed Predictor from an exported .onnx (meta read from the file if not given)."""
        from evbattery.inference.onnx import onnx_novelty, onnx_session

        session, file_meta = onnx_session(path, threads=threads)
        pred = cls(None, meta or file_meta, fast=False, bf16=False, source=str(path), device="cpu")
        pred.backend, pred._session, pred.novelty = "onnx", session, onnx_novelty(session)
        return pred

    @property
    def precision(self) -> str:
        """int8 / int7 for a quantized model, else bf16 or fp32 (what the logits are computed in)."""
        return (self.meta.get("quantization") or {}).get("precision") or ("bf16" if self.bf16 else "fp32")

    @property
    def version(self) -> str:
        """Model version string: name@created (from the checkpoint metadata)."""
        return f"{self.name}@{self.meta.get('created', 'unknown')}"

    # -- preprocessing -----------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 (a photo, or a cutout for a cutout model) -> 3xSxS uint8, letterboxed."""
        return resize_uint8(image, self.image_size, pad_fill(self.input_type))

    def to_input(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(N,3,S,S) uint8 -> normalised float32 network input, on the Predictor's device (uint8 crosses to a
        GPU, a quarter of the float32 bytes)."""
        return normalize(batch_uint8.to(self.device), self.mean, self.std)

    # -- inference ---------------------------------------------------------------------------
    @torch.inference_mode()
    def outputs(self, batch_uint8: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """(N,3,S,S) uint8 -> ((N, C) float32 logits, (N,) novelty or None), numpy, on the host."""
        feats = None
        if self._session is not None:
            x = self.to_input(batch_uint8)
            name = self._session.get_inputs()[0].name
            outs = self._session.run(None, {name: x.numpy()})
            logits = outs[0].astype(np.float32)
            feats = outs[1] if len(outs) > 1 else None
        else:
            with self._lock:  # the whole device round trip: one batch at a time per model
                x = self.to_input(batch_uint8)
                if self.fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(self.device, enabled=self.bf16):
                    out = self.graph(x)
                if isinstance(out, tuple):
                    out, f = out
                    feats = f.float().cpu().numpy()
                logits = out.float().cpu().numpy()
        novelty = self.novelty(feats).astype(np.float32) if self.novelty is not None and feats is not None else None
        return logits, novelty

    def logits(self, batch_uint8: torch.Tensor) -> np.ndarray:
        """(N,3,S,S) uint8 -> (N, C) float32 logits (numpy, on the host)."""
        return self.outputs(batch_uint8)[0]

    def predict_batch(self, batch_uint8: torch.Tensor) -> list[Prediction]:
        """Predictions for a prepared uint8 batch."""
        return self.decode(*self.outputs(batch_uint8))

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 32) -> list[Prediction]:
        """Predictions for HxWx3 uint8 arrays (photos or cutouts, matching self.input_type)."""
        out: list[Prediction] = []
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self.prepare(im) for im in images[i:i + batch_size]])
            out.extend(self.predict_batch(batch))
        return out

    def decode(self, logits: np.ndarray, novelty: np.ndarray | None = None) -> list[Prediction]:
        """Logits (and novelty, where known) -> Predictions with softmax probabilities."""
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        preds = []
        for i, (row, lg) in enumerate(zip(p, logits, strict=True)):
            k = int(row.argmax())
            preds.append(Prediction(self.classes[k], float(row[k]),
                                    {c: float(v) for c, v in zip(self.classes, row, strict=True)},
                                    self.name, [float(v) for v in lg],
                                    None if novelty is None else round(float(novelty[i]), 4)))
        return preds

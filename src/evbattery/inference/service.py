"""The set of loaded models, used generically by the predict CLI and the API.

`ModelService` holds {name: Predictor} for every best_model_<name>.pth (or exported .onnx) in a model
folder plus the optional segmenter, and answers "these models on this image" in one call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evbattery.inference.batching import BatchRunner
from evbattery.inference.cpu_onnx import ORT_MIN_FORWARDS, attach_onnx_runtime
from evbattery.inference.cutouts import MaskPredictor, cutout_for
from evbattery.inference.predictor import Predictor
from evbattery.inference.quantize import int8_path
from evbattery.inference.segmenter import load_segmenter
from evbattery.models.registry import discover_models, segmenter_path

log = logging.getLogger(__name__)

# Short names the API and CLI accept for the known models.
ALIASES = {"image": "images", "cutout": "cutouts", "debiased": "images_debiased"}
# auto: the checkpoint in torch, its logits through an in-memory ONNX Runtime export where that is the faster
# path (a CPU without native bf16: 2-3x at batch 1 for the Lite backbones, inference/cpu_onnx.py), else torch.
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


class UnknownModelError(KeyError):
    """A model name that is not loaded."""

    def __str__(self) -> str:
        return str(self.args[0])


def load_predictors(model_dir: Path, backend: str = "auto", onnx_dir: Path | None = None,
                    names: Sequence[str] | None = None, onnx_threads: int = 2,
                    device: str | torch.device | None = None, forwards: int = ORT_MIN_FORWARDS) -> dict[str, Predictor]:
    """{name: Predictor} for the classifiers in model_dir; torch models on `device` (None: EVBATTERY_DEVICE,
    default auto = the GPU when there is one). ONNX Runtime models run on the CPU.

    Backend "auto" loads the checkpoint and attaches ONNX Runtime where onnx_runtime_fits says it pays for
    `forwards` forward passes per model (a server makes many; the predict CLI passes its photo count); the
    Predictor's backend says which ran. Backend "onnx" loads <onnx_dir>/<name>.onnx, "onnx-int8"
    <onnx_dir>/<name>.int8.onnx (both written by `evbattery export onnx [--int8]`; onnx_dir defaults to
    <model_dir>/onnx).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    found = discover_models(model_dir)
    out: dict[str, Predictor] = {}
    for name, path in found.items():
        if names is not None and name not in names:
            continue
        if backend.startswith("onnx"):
            folder = Path(onnx_dir or Path(model_dir) / "onnx")
            onnx_path = int8_path(folder, name) if backend == "onnx-int8" else folder / f"{name}.onnx"
            if not onnx_path.is_file():
                flag = " --int8" if backend == "onnx-int8" else ""
                raise FileNotFoundError(f"{onnx_path} not found (backend {backend}: run `evbattery export onnx{flag} "
                                        f"--model-dir {model_dir}` first)")
            out[name] = Predictor.from_onnx(onnx_path, threads=onnx_threads)
        else:
            out[name] = Predictor.from_checkpoint(path, device=device)
            if backend == "auto" and (why := attach_onnx_runtime(out[name], forwards, threads=onnx_threads)):
                log.info("%s stays on torch: %s", name, why)
    return out


@dataclass
class ModelService:
    """Loaded classifiers + optional segmenter; thread-safe because each Predictor is.

    With a `batcher`, `run` sends its model calls through it, so concurrent callers share batches; each
    batch runs on its Predictor's device (`device`: where load() put the torch models and the segmenter).
    """

    predictors: dict[str, Predictor] = field(default_factory=dict)
    segmenter: MaskPredictor | None = None
    model_dir: Path = Path("model")
    errors: dict[str, str] = field(default_factory=dict)
    batcher: BatchRunner | None = None
    device: str | torch.device | None = None
    _explainers: dict[str, Predictor] = field(default_factory=dict, repr=False)
    _explain_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_dir: Path, backend: str = "auto", onnx_dir: Path | None = None,
             batcher: BatchRunner | None = None, onnx_threads: int = 2,
             device: str | torch.device | None = None, forwards: int = ORT_MIN_FORWARDS) -> ModelService:
        """Load every model of model_dir (failures are recorded in .errors, not raised) onto `device` (None:
        EVBATTERY_DEVICE, default auto; a bad or missing device raises DeviceError here, before any model)."""
        from evbattery.core.devices import resolve_device

        device = resolve_device(device)
        svc = cls(model_dir=Path(model_dir), batcher=batcher, device=device)
        names = list(discover_models(model_dir))
        for name in names:  # one model failing to load does not take the others down
            try:
                svc.predictors |= load_predictors(model_dir, backend, onnx_dir, names=[name], onnx_threads=onnx_threads,
                                                  device=device, forwards=forwards)
            except Exception as e:
                svc.errors[name] = f"{type(e).__name__}: {e}"
        if not svc.predictors:
            svc.errors["models"] = f"no best_model_<name>.pth checkpoints in {model_dir}" if not names else \
                f"none of the {len(names)} models in {model_dir} could be loaded (see each model's error)"
        try:
            svc.segmenter = load_segmenter(segmenter_path(model_dir), device=device)
        except Exception as e:
            svc.errors["segmenter"] = f"{type(e).__name__}: {e}"
        return svc

    def resolve(self, name: str) -> str:
        """Canonical loaded-model name for a name or alias (image, cutout, debiased)."""
        canonical = ALIASES.get(name, name)
        if canonical not in self.predictors:
            known = ", ".join(self.predictors) or "none"
            raise UnknownModelError(f"model {name!r} is not loaded (loaded: {known})")
        return canonical

    def missing(self, required: Sequence[str] = ("images", "cutouts")) -> list[str]:
        """Names of the required models that are not loaded."""
        return [n for n in required if n not in self.predictors]

    def needs_cutout(self, names: Sequence[str]) -> bool:
        """True if any of the named models takes cutouts."""
        return any(self.predictors[n].input_type == "cutouts" for n in names)

    def run(self, names: Sequence[str], image: np.ndarray, alpha_mask: np.ndarray | None = None,
            uploaded_mask: np.ndarray | None = None) -> dict[str, Any]:
        """Run the named models on one RGB image -> {"predictions", "mask_source", "latency_ms"}.

        Photo models get the photo; cutout models get the cutout of the policy in inference.cutouts.
        An RGBA cutout (alpha) sent to a photo model is fed as its RGB pixels, as sent.
        """
        t0 = time.perf_counter()
        cutout, mask_source = None, None
        if self.needs_cutout(names):
            cutout, _, mask_source = cutout_for(image, uploaded_mask, alpha_mask, self.segmenter)
        preds, model_ms = {}, {}
        if self.batcher is not None:
            started, futures = {}, {}
            for n in names:  # submit every model's input first: they can share batches with other requests
                p = self.predictors[n]
                x = p.prepare(cutout if p.input_type == "cutouts" else image)
                started[n], futures[n] = time.perf_counter(), self.batcher.submit(p, x)
            for n in names:
                preds[n] = futures[n].result()
                model_ms[n] = (time.perf_counter() - started[n]) * 1000.0
        else:
            for n in names:
                p, t1 = self.predictors[n], time.perf_counter()
                preds[n] = p.predict([cutout if p.input_type == "cutouts" else image])[0]
                model_ms[n] = (time.perf_counter() - t1) * 1000.0
        return {"predictions": preds, "mask_source": mask_source, "model_ms": model_ms,
                "latency_ms": round((time.perf_counter() - t0) * 1000.0, 3)}

    def explain(self, name: str, image: np.ndarray, alpha_mask: np.ndarray | None = None,
                uploaded_mask: np.ndarray | None = None) -> dict[str, Any]:
        """Grad-CAM of a model on one image -> {"overlay" HxWx3 uint8, "prediction", "mask_source"}."""
        from evbattery.inference.gradcam import gradcam_maps, overlay

        pred = self.predictors[name]
        x, mask_source = image, None
        if pred.input_type == "cutouts":
            x, _, mask_source = cutout_for(image, uploaded_mask, alpha_mask, self.segmenter)
        with self._explain_lock:
            # Grad-CAM hooks a torch model: use a private fp32 copy so served inference is untouched.
            if name not in self._explainers:
                self._explainers[name] = Predictor.from_checkpoint(discover_models(self.model_dir)[name], fast=False,
                                                                   device=self.device)
            ex = self._explainers[name]
            batch = ex.prepare(x)[None]
            prediction = ex.predict_batch(batch)[0]
            cam = gradcam_maps(ex, batch)[0]
        return {"overlay": overlay(x, cam), "prediction": prediction, "mask_source": mask_source}

    def close(self) -> None:
        """Stop the batching thread, if any."""
        if self.batcher is not None:
            self.batcher.close()

    def describe(self) -> list[dict[str, Any]]:
        """Metadata of every loaded model (for /models)."""
        out = []
        for name, p in self.predictors.items():
            m = p.meta
            out.append({"name": name, "version": p.version, "backend": p.backend, "precision": p.precision,
                        "input_type": p.input_type,
                        "classes": p.classes, "image_size": p.image_size, "arch": m.get("arch", "resnet18"),
                        "head": m.get("head") or "avgpool",
                        "dataset_fingerprint": m.get("dataset_fingerprint"), "metrics": m.get("metrics") or {},
                        "best_epoch": m.get("best_epoch"), "pretrained": m.get("pretrained"),
                        "debias": m.get("debias"), "novelty": m.get("novelty") if p.novelty else None,
                        "created": m.get("created"), "source": p.source})
        return out

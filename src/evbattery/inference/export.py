"""ONNX export: one self-contained fp32 .onnx per model, dynamic batch, the checkpoint metadata inside."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch

from evbattery.core.io import atomic_write_bytes
from evbattery.inference.onnx import META_KEY, max_abs_diff, onnx_session
from evbattery.inference.predictor import Predictor


def export_onnx(predictor_or_ckpt: Any, out_path: Path | str) -> Path:
    """Export a Predictor (or a checkpoint path) to one self-contained fp32 .onnx file; returns its path."""
    pred = predictor_or_ckpt if isinstance(predictor_or_ckpt, Predictor) else \
        Predictor.from_checkpoint(predictor_or_ckpt, fast=False, device="cpu")
    if pred.backend != "torch":
        raise ValueError(f"{pred.source}: only a torch-backed Predictor can be exported")
    # fp32, contiguous memory format, on the CPU: the exported graph must not depend on the torch fast path
    # (a Predictor on a GPU keeps its model; the export traces a CPU copy).
    model = pred.model if pred.device.type == "cpu" else copy.deepcopy(pred.model).cpu()
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    x = torch.zeros(2, 3, pred.image_size, pred.image_size)
    program = torch.onnx.export(model, (x,), dynamo=True, external_data=False, input_names=["input"],
                                output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                verbose=False)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(pred.meta, default=str)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, proto.SerializeToString())
    onnx.checker.check_model(str(out_path))
    return out_path


# On a 2-core AVX2 CPU (AMD Zen 3, 2026-12-07), batch 32 at 224 px: EfficientNet-Lite2 ran 22.6 img/s in torch
# (channels_last, fp32) and 90.0 img/s in ONNX Runtime; Lite0 32.6 vs 109.7. The export costs 13-19 s, so ORT
# pays off from about a thousand forward passes per model (the bias suite makes 7 per photo).
ORT_MIN_FORWARDS = 1000


def attach_onnx_runtime(pred: Predictor, threads: int = 2, atol: float = 1e-3) -> str | None:
    """Run `pred`'s logits through ONNX Runtime from now on, keeping its torch model for Grad-CAM.

    Only for an fp32 Predictor on a CPU without native bf16 (where torch's bf16 path is the fast one). The
    exported graph must give the torch logits on a fixed random batch within `atol`, else the Predictor stays
    on torch. Returns None when attached, else why not (one line)."""
    if pred.backend != "torch":
        return f"{pred.source}: already runs {pred.backend}"
    if pred.device.type != "cpu" or pred.bf16 or pred.meta.get("quantization"):
        return f"{pred.source}: ONNX Runtime is used only for fp32 models on CPUs without bf16"
    gen = torch.Generator().manual_seed(0)
    probe = torch.randint(0, 256, (4, 3, pred.image_size, pred.image_size), dtype=torch.uint8, generator=gen)
    with tempfile.TemporaryDirectory(prefix="evbattery-onnx-") as d:
        session, _ = onnx_session(export_onnx(pred, Path(d) / "model.onnx"), threads=threads)
    if pred.fast:  # export_onnx put the model back in the contiguous format, which Grad-CAM reads fine
        pred.model = pred.model.to(memory_format=torch.channels_last)
    ref = pred.logits(probe)
    pred._session, pred.backend = session, "onnx"
    diff = max_abs_diff(ref, pred.logits(probe))
    if diff > atol:
        pred._session, pred.backend = None, "torch"
        return f"{pred.source}: ONNX logits differ from torch by {diff:.2g} (> {atol:g}); kept torch"
    return None

"""ONNX export: one self-contained fp32 .onnx per model, dynamic batch, the checkpoint metadata inside."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import onnx
import torch

from evbattery.core.io import atomic_write_bytes
from evbattery.inference.onnx import set_metadata
from evbattery.inference.predictor import Predictor


def export_onnx(predictor_or_ckpt: Any, out_path: Path | str) -> Path:
    """Export a Predictor (or a checkpoint path) to one self-contained fp32 .onnx file; returns its path."""
    pred = predictor_or_ckpt if isinstance(predictor_or_ckpt, Predictor) else \
        Predictor.from_checkpoint(predictor_or_ckpt, fast=False, device="cpu")
    if pred.backend != "torch":
        raise ValueError(f"{pred.source}: only a torch-backed Predictor can be exported")
    # fp32, contiguous memory format, on the CPU: the exported graph must not depend on the torch fast path
    # (a Predictor on a GPU keeps its model; the export traces a CPU copy).
    # A model with a novelty score exports as (logits, features): the score is applied to the features outside.
    model = copy.deepcopy(pred.graph).cpu() if pred.device.type != "cpu" else pred.graph
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    x = torch.zeros(2, 3, pred.image_size, pred.image_size)
    outputs = ["logits", "features"] if pred.novelty is not None else ["logits"]
    program = torch.onnx.export(model, (x,), dynamo=True, external_data=False, input_names=["input"],
                                output_names=outputs, dynamic_shapes=({0: torch.export.Dim("batch")},),
                                verbose=False)
    proto = program.model_proto
    set_metadata(proto, pred.meta, pred.novelty)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, proto.SerializeToString())
    onnx.checker.check_model(str(out_path))
    return out_path

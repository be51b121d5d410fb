"""ONNX export (one self-contained fp32 .onnx per model, dynamic batch) and ONNX Runtime sessions.

The checkpoint metadata travels inside the file (metadata_props["evbattery_meta"], JSON), so an
.onnx file alone rebuilds a Predictor: `Predictor.from_onnx(path)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = "evbattery_meta"


def export_onnx(predictor_or_ckpt: Any, out_path: Path | str) -> Path:
    """Export a Predictor (or a checkpoint path) to one self-contained fp32 .onnx file; returns its path."""
    import copy

    import onnx
    import torch

    from evbattery.data.layout import atomic_write_bytes
    from evbattery.inference.predictor import Predictor

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


def read_onnx_meta(path: Path | str) -> dict[str, Any]:
    """The checkpoint metadata stored in an exported .onnx file."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _meta_of(sess, path)


def _meta_of(sess: Any, path: Path | str) -> dict[str, Any]:
    props = sess.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise ValueError(f"{path}: no {META_KEY} metadata (not exported by evbattery export onnx)")
    return json.loads(props[META_KEY])


def onnx_session(path: Path | str, threads: int = 2) -> tuple[Any, dict[str, Any]]:
    """(ONNX Runtime CPU session with `threads` intra-op threads, checkpoint meta) for an .onnx file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} not found")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Idle ORT threads would spin for work; in the API they share 2 cores with decoding threads.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return sess, _meta_of(sess, path)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference between two logit arrays."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

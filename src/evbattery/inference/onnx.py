"""ONNX Runtime sessions for exported models (export: inference/export.py).

The checkpoint metadata travels inside the file (metadata_props["evbattery_meta"], JSON), so an
.onnx file alone rebuilds a Predictor: `Predictor.from_onnx(path)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = "evbattery_meta"


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
    sess = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    return sess, _meta_of(sess, path)


def session_options(threads: int = 2) -> Any:
    """ONNX Runtime session options: `threads` intra-op threads that do not spin, every graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Idle ORT threads would spin for work; in the API they share 2 cores with decoding threads.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference between two logit arrays."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

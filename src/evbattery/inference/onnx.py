"""ONNX Runtime sessions for exported models (export: inference/export.py).

The checkpoint metadata travels inside the file (metadata_props["evbattery_meta"], JSON), so an
.onnx file alone rebuilds a Predictor: `Predictor.from_onnx(path)`. A model with a novelty score
(models/novelty.py) has a second output, "features", and the score's state in metadata_props["evbattery_novelty"].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evbattery.models.novelty import NoveltyScore

META_KEY = "evbattery_meta"
NOVELTY_KEY = "evbattery_novelty"


def set_metadata(proto: Any, meta: dict[str, Any], novelty: NoveltyScore | None) -> None:
    """Replace an ONNX ModelProto's metadata_props with the checkpoint metadata (and the novelty score)."""
    del proto.metadata_props[:]
    entries = {META_KEY: json.dumps(meta, default=str), **({NOVELTY_KEY: novelty.to_text()} if novelty else {})}
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def onnx_novelty(sess: Any) -> NoveltyScore | None:
    """The novelty score stored with a session's model, if it has one and a "features" output to apply it to."""
    text = sess.get_modelmeta().custom_metadata_map.get(NOVELTY_KEY)
    return NoveltyScore.from_text(text) if text and len(sess.get_outputs()) > 1 else None


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

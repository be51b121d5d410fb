"""Evaluate classifiers on a split through the Predictor (the API's inference path), one model or all
models x all inputs (--cross). Results go to reports/eval_<name>_<split>.json/.png and the tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from evbattery.core.config import MASK_THRESHOLD
from evbattery.core.imageio import load_mask, load_rgb
from evbattery.core.metrics import accuracy_by_cell_size, classification_metrics, write_confusion_png
from evbattery.data.layout import DatasetError, DatasetLayout
from evbattery.inference.cpu_onnx import attach_onnx_runtime
from evbattery.inference.predictor import Predictor

INPUT_KINDS = ("images", "cutouts")
CHUNK = 64  # images decoded at a time (bounded memory on big splits)


def evaluate_model(predictor: Predictor, layout: DatasetLayout, split: str = "test",
                   input_kind: str | None = None) -> dict[str, Any]:
    """Metrics of one model on a split's images or cutouts (default: the model's own input type), on the
    Predictor's device (`Predictor.from_checkpoint(path, device=...)`) and backend (torch or ONNX Runtime)."""
    kind = input_kind or predictor.input_type
    if kind not in INPUT_KINDS:
        raise ValueError(f"input kind {kind!r}; expected one of {', '.join(INPUT_KINDS)}")
    samples = layout.require_split(split)
    unknown = sorted({s.cls for s in samples} - set(predictor.classes))
    if unknown:
        raise DatasetError(f"split {split!r} has classes {unknown} that model {predictor.name!r} does not know "
                           f"({predictor.classes})")
    y_true, y_pred, probs, files = [], [], [], []
    for i in range(0, len(samples), CHUNK):
        chunk = samples[i:i + CHUNK]
        for s, p in zip(chunk, predictor.predict([load_rgb(s.path(kind)) for s in chunk]), strict=True):
            y_true.append(predictor.classes.index(s.cls))
            y_pred.append(predictor.classes.index(p.predicted_class))
            probs.append([p.probabilities[c] for c in predictor.classes])
            files.append(str(s.path(kind)))
    m = classification_metrics(y_true, y_pred, np.asarray(probs), predictor.classes)
    if all(s.mask.is_file() for s in samples):  # every layout has masks; an imported set may lack some
        area = [float((load_mask(s.mask) >= MASK_THRESHOLD).mean()) for s in samples]
        m["by_cell_size"] = accuracy_by_cell_size(np.equal(y_true, y_pred), area)
    wrong = [{"file": f, "true": predictor.classes[t], "predicted": predictor.classes[p]}
             for f, t, p in zip(files, y_true, y_pred, strict=True) if t != p]
    return {"model": predictor.name, "model_input_type": predictor.input_type, "input": kind, "split": split,
            "checkpoint": predictor.source, "backend": predictor.backend, "dataset_fingerprint": layout.fingerprint(), **m,
            "misclassified": wrong[:50]}


def write_eval_report(result: dict[str, Any], folder: Path | None = None) -> tuple[Path, Path]:
    """reports/eval_<model>[_on_<input>]_<split>.json and .png (suffix only when input != the model's own)."""
    from evbattery.core.io import reports_dir, write_json_report

    own = result["input"] == result["model_input_type"]
    stem = f"eval_{result['model']}{'' if own else '_on_' + result['input']}_{result['split']}"
    folder = folder or reports_dir()
    json_path = write_json_report(stem, result, folder)
    png = write_confusion_png(result["confusion"], result["classes"], folder / f"{stem}.png",
                              f"{result['model']} on {result['split']} {result['input']}: "
                              f"acc {result['accuracy']:.3f}")
    return json_path, png


def cross_evaluate(model_paths: dict[str, Path], layout: DatasetLayout, split: str = "test",
                   device: str | torch.device | None = None, report_folder: Path | None = None) -> dict[str, Any]:
    """Every model on every input kind: {"split", "models", "inputs", "accuracy": {model: {input: acc}}, "results"}.

    device: where the Predictors run (None: EVBATTERY_DEVICE, default auto). report_folder: also write each
    (model, input) report there, as `evaluate --model <name>` does (write_eval_report)."""
    results: list[dict[str, Any]] = []
    acc: dict[str, dict[str, float]] = {}
    n_photos = len(layout.require_split(split))
    for name, path in model_paths.items():
        predictor = Predictor.from_checkpoint(path, device=device)
        attach_onnx_runtime(predictor, len(INPUT_KINDS) * n_photos)
        for kind in INPUT_KINDS:
            r = evaluate_model(predictor, layout, split, kind)
            if report_folder is not None:
                write_eval_report(r, report_folder)
            results.append({k: v for k, v in r.items() if k != "misclassified"})
            acc.setdefault(name, {})[kind] = r["accuracy"]
    return {"split": split, "models": list(model_paths), "inputs": list(INPUT_KINDS), "accuracy": acc,
            "results": results}

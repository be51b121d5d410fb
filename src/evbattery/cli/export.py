"""`evbattery export onnx`: ONNX files (fp32, optionally int8) for every model."""

from __future__ import annotations

from pathlib import Path

import typer

from evbattery.cli.app import export_app
from evbattery.core.console import fail, info, table


@export_app.command("onnx")
def export_onnx_cmd(model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder."),
                    out: Path = typer.Option(None, "--out", help="Output folder (default <model-dir>/onnx)."),
                    int8: bool = typer.Option(False, "--int8", help="Also write <name>.int8.onnx: static int8 "
                                              "quantization calibrated on the dataset's train split."),
                    data: Path = typer.Option(None, "--data", help="Dataset for int8 calibration and the "
                                              "agreement check (default $EVBATTERY_DATA_DIR or data/processed)."),
                    calib_n: int = typer.Option(64, "--calib-n", min=1, help="Calibration images per model."),
                    check_n: int = typer.Option(150, "--check-n", min=0, help="Val images to compare int8 "
                                                "with fp32 on (0 = skip)."),
                    reduce_range: bool = typer.Option(None, "--reduce-range/--full-range", help="7-bit or 8-bit "
                                                      "int8 weights (default: 7-bit on x86 CPUs without VNNI, "
                                                      "whose int8 kernels saturate).")) -> None:
    """Export every best_model_<name>.pth to <out>/<name>.onnx (fp32, dynamic batch, self-contained)."""
    from evbattery.core.config import get_settings
    from evbattery.core.io import write_json_report
    from evbattery.data.layout import DatasetError
    from evbattery.inference.export import export_onnx
    from evbattery.inference.predictor import Predictor
    from evbattery.inference.quantize import (
        agreement_report,
        calibration_images,
        default_reduce_range,
        int8_path,
        quantize_int8,
    )
    from evbattery.models.checkpoint import CheckpointError
    from evbattery.models.registry import discover_models

    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    data = data or settings.data_dir
    out = out or model_dir / "onnx"
    found = discover_models(model_dir)
    if not found:
        fail(f"{model_dir}: no best_model_<name>.pth checkpoints to export")
    if reduce_range is None:
        reduce_range = default_reduce_range()
    rows = []
    for name, path in found.items():
        info(f"exporting {path} ...")
        try:
            pred = Predictor.from_checkpoint(path, fast=False)
            target = export_onnx(pred, out / f"{name}.onnx")
        except CheckpointError as e:
            fail(str(e))
        rows.append({"model": name, "precision": "fp32", "checkpoint": str(path), "onnx": str(target),
                     "mb": round(target.stat().st_size / 2**20, 2)})
        if not int8:
            continue
        try:
            calib = calibration_images(data, pred.input_type, calib_n, split="train")
            check = calibration_images(data, pred.input_type, check_n, split="val") if check_n else []
        except (DatasetError, FileNotFoundError) as e:
            fail(f"--int8 needs a dataset to calibrate on: {e}")
        info(f"quantizing {name} to int8, {7 if reduce_range else 8}-bit weights ({len(calib)} calibration "
             f"{pred.input_type} from {data}) ...")
        q = quantize_int8(pred, int8_path(out, name), calib, calibration_source=str(data), fp32_onnx=target,
                          reduce_range=reduce_range)
        quantized = Predictor.from_onnx(q)
        rows.append({"model": name, "precision": "int8", "weight_bits": quantized.meta["quantization"]["weight_bits"],
                     "checkpoint": str(path), "onnx": str(q), "mb": round(q.stat().st_size / 2**20, 2),
                     "vs_fp32": agreement_report(pred, quantized, check)})
    write_json_report("export_onnx", {"model_dir": str(model_dir), "out": str(out), "files": rows})
    table("ONNX export", ["model", "precision", "onnx", "MB", "top-1 = fp32"],
          [(r["model"], r["precision"], r["onnx"], r["mb"],
            r.get("vs_fp32", {}).get("top1_agreement", "-")) for r in rows])

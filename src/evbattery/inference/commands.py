"""CLI: `evbattery predict`, `serve`, `export onnx`, `bench infer`, `bench api`."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import typer

from evbattery.cli import app, bench_app, export_app
from evbattery.console import fail, info, print_json, table

FORMATS = ("table", "json", "csv")


def image_files(paths: list[Path]) -> list[Path]:
    """Files given directly plus every image under the given folders (recursive, sorted)."""
    from evbattery.data.layout import IMAGE_EXTS

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            out.append(p)
        else:
            fail(f"{p}: no such file or folder")
    if not out:
        fail(f"no images found in {', '.join(map(str, paths))} (looked for {', '.join(IMAGE_EXTS)})")
    return out


def model_names(svc: Any, choice: str) -> list[str]:
    """Model names for --model: both, all, or one name/alias."""
    from evbattery.inference.service import UnknownModelError

    try:
        if choice == "all":
            return list(svc.predictors) or fail(f"no models in {svc.model_dir}")
        if choice == "both":
            return [svc.resolve("images"), svc.resolve("cutouts")]
        return [svc.resolve(choice)]
    except UnknownModelError as e:
        fail(f"--model {choice}: {e} (checkpoints are read from {svc.model_dir})")


@app.command("predict")
def predict_cmd(
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    model: str = typer.Option(None, "--model", "-m", help="images | cutouts | <name> | both | all "
                              "(default: $INPUT_TYPE, else both)."),
    mask: Path = typer.Option(None, "--mask", help="Mask for a single image (255 = cell) for cutout models."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json | csv"),
    model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder (default $EVBATTERY_MODEL_DIR "
                                   "or model/)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per forward pass."),
) -> None:
    """Classify images with one, two or all models; results on stdout, progress on stderr.

    An unreadable image is skipped and named; the others are still classified, and the exit code is 1.
    """
    import numpy as np
    from rich.markup import escape
    from tqdm import tqdm

    from evbattery.config import get_settings
    from evbattery.imageio import ImageDecodeError, ImageTooLargeError, decode_image_with_alpha, load_mask
    from evbattery.inference.cutouts import MaskSizeError, NoSegmenterError, cutout_for
    from evbattery.inference.service import ModelService, agreement
    from evbattery.reports import write_json_report

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    choice = model or os.environ.get("INPUT_TYPE") or "both"
    files = image_files(paths)
    if mask is not None and len(files) != 1:
        fail(f"--mask applies to one image, got {len(files)}")
    svc = ModelService.load(model_dir)
    if svc.errors.get("models"):
        fail(f"{model_dir}: {svc.errors['models']}")
    names = model_names(svc, choice)
    uploaded = None
    if mask is not None:
        try:
            uploaded = load_mask(mask)
        except (ImageDecodeError, FileNotFoundError) as e:
            fail(f"--mask {mask}: {e}")
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []  # unreadable files: named, left out, and the exit code says so
    needs_cutout = svc.needs_cutout(names)
    with tqdm(total=len(files), desc="predict", unit="img", disable=None) as bar:
        for i in range(0, len(files), batch_size):
            batch, chunk, photos, cutouts, sources = files[i:i + batch_size], [], [], [], []
            for f in batch:
                try:
                    img, alpha = decode_image_with_alpha(f, max_pixels=settings.max_pixels)
                except (ImageDecodeError, ImageTooLargeError) as e:  # the message names the file
                    info(f"[yellow]skipped:[/] {escape(str(e))}")
                    skipped.append({"file": str(f), "error": str(e)})
                    continue
                photo = np.asarray(img)
                try:
                    cut, _, src = cutout_for(photo, uploaded, alpha, svc.segmenter) if needs_cutout else (None, 0, None)
                except (MaskSizeError, NoSegmenterError) as e:
                    fail(f"{f}: {e}")
                chunk.append(f)
                photos.append(photo)
                cutouts.append(cut)
                sources.append(src)
            bar.update(len(batch))
            if not chunk:
                continue
            per_model = {n: svc.predictors[n].predict(cutouts if svc.predictors[n].input_type == "cutouts"
                                                      else photos, batch_size=batch_size) for n in names}
            for j, f in enumerate(chunk):
                preds = {n: per_model[n][j] for n in names}
                summary = agreement(preds) if len(names) > 1 else {}
                for n, p in preds.items():
                    rows.append({"file": str(f), **p.as_dict(), "mask_source": sources[j] if
                                 svc.predictors[n].input_type == "cutouts" else None,
                                 **({"agree": summary["agree"]} if summary else {})})
    report = write_json_report("predictions", {"model_dir": str(model_dir), "models": names,
                                               "predictions": rows, "skipped": skipped})
    if rows:
        emit(rows, fmt, names)
    if skipped:
        fail(f"{len(skipped)} of {len(files)} files could not be read and were skipped (named above and in {report})")


def emit(rows: list[dict[str, Any]], fmt: str, names: list[str]) -> None:
    """Print prediction rows as a table, JSON or CSV on stdout."""
    if fmt == "json":
        print_json(rows)
    elif fmt == "csv":
        classes = list(rows[0]["probabilities"]) if rows else []
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "model", "predicted_class", "confidence", "mask_source",
                    *[f"p_{c}" for c in classes]])
        for r in rows:
            w.writerow([r["file"], r["model_used"], r["predicted_class"], f"{r['confidence']:.6f}",
                        r["mask_source"] or "", *[f"{r['probabilities'][c]:.6f}" for c in classes]])
        typer.echo(buf.getvalue(), nl=False)
    else:
        table(f"predictions ({', '.join(names)})", ["file", "model", "class", "confidence", "mask"],
              [(r["file"], r["model_used"], r["predicted_class"], r["confidence"], r["mask_source"] or "-")
               for r in rows])


@app.command("serve")
def serve_cmd(host: str = typer.Option("127.0.0.1", help="Bind address."),
              port: int = typer.Option(8000, help="Port."),
              workers: int = typer.Option(1, min=1, help="Worker processes (each loads the models)."),
              model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder (sets "
                                             "EVBATTERY_MODEL_DIR)."),
              backend: str = typer.Option(None, "--backend", help="torch | onnx | onnx-int8 (sets "
                                          "EVBATTERY_API_BACKEND; the onnx ones need `evbattery export onnx "
                                          "[--int8]` first).")) -> None:
    """Run the HTTP API with uvicorn (docs at /docs)."""
    import uvicorn

    from evbattery.inference.service import BACKENDS

    if model_dir is not None:
        os.environ["EVBATTERY_MODEL_DIR"] = str(model_dir)
    if backend is not None:
        if backend not in BACKENDS:
            fail(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        os.environ["EVBATTERY_API_BACKEND"] = backend
    uvicorn.run("evbattery.api.app:app", host=host, port=port, workers=workers)


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
    from evbattery.config import get_settings
    from evbattery.data.layout import DatasetError
    from evbattery.inference.onnx import export_onnx
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
    from evbattery.reports import write_json_report

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


@bench_app.command("infer")
def bench_infer_cmd(model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder."),
                    size: int = typer.Option(224, help="Input side in pixels."),
                    iters: int = typer.Option(50, min=2, help="Timed runs per model and backend."),
                    warmup: int = typer.Option(5, min=0, help="Untimed warm-up runs.")) -> None:
    """Per-model latency (p50/p99 ms, batch 1): torch, ONNX Runtime fp32 and int8; reports/bench_infer.json."""
    from evbattery.config import get_settings
    from evbattery.inference.bench import bench_infer
    from evbattery.models.registry import discover_models
    from evbattery.reports import write_json_report

    model_dir = model_dir or get_settings().model_dir
    found = discover_models(model_dir)
    if not found:
        fail(f"{model_dir}: no best_model_<name>.pth checkpoints")
    result = bench_infer(found, size=size, iters=iters, warmup=warmup)
    path = write_json_report("bench_infer", result)
    print_json(result)
    table(f"inference latency at {size} px, batch 1 (ms; target p50 <= {result['target_p50_ms']:g})",
          ["model", "backend", "precision", "p50", "p99", "target"],
          [(r["model"], r["backend"], r["precision"], r["p50_ms"], r["p99_ms"], "met" if r["meets_target"] else "-")
           for r in result["results"]], to_stderr=True)
    info(f"wrote {path}")


@bench_app.command("api")
def bench_api_cmd(model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder."),
                  seconds: float = typer.Option(30.0, help="Load duration per server."),
                  concurrency: int = typer.Option(8, min=1, help="Requests in flight."),
                  backend: str = typer.Option("onnx-int8", help="Backend of the evbattery service: torch | onnx | "
                                              "onnx-int8 (exported to a temporary folder for the run)."),
                  data: Path = typer.Option(None, "--data", help="Dataset to calibrate int8 on (default "
                                            "$EVBATTERY_DATA_DIR or data/processed)."),
                  size: int = typer.Option(None, "--size", min=16, help="Serve the models at this input side "
                                           "(e.g. 224) instead of the size they were trained at.")) -> None:
    """Requests/s and p50/p99 of POST /predict/both: evbattery service vs a naive one (same run)."""
    from evbattery.config import get_settings
    from evbattery.inference.bench import bench_api
    from evbattery.inference.service import BACKENDS
    from evbattery.reports import write_json_report

    if backend not in BACKENDS:
        fail(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    try:
        result = bench_api(model_dir, seconds=seconds, concurrency=concurrency, backend=backend,
                           data_dir=data or settings.data_dir, size=size)
    except RuntimeError as e:
        fail(str(e))
    path = write_json_report("bench_api", result)
    print_json(result)
    table(f"POST /predict/both, concurrency {concurrency}, {seconds:g} s", ["service", "req/s", "p50 ms", "p99 ms",
          "errors"], [(k, v["rps"], v["p50_ms"], v["p99_ms"], v["errors"]) for k, v in result["services"].items()],
          to_stderr=True)
    info(f"throughput ratio {result['rps_ratio']:.2f}x; wrote {path}")

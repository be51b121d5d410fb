"""`evbattery predict`: classify photos (files or folders) with every model, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import typer

from evbattery.cli.app import Device, app, use_device
from evbattery.core.console import fail, info, print_json, table

FORMATS = ("table", "json", "csv")


def image_files(paths: list[Path]) -> list[Path]:
    """Files given directly plus every image under the given folders (recursive, sorted)."""
    from evbattery.core.imageio import readable_suffixes

    suffixes = readable_suffixes()
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
        elif p.is_file():
            out.append(p)
        else:
            fail(f"{p}: no such file or folder")
    if not out:
        fail(f"no images found in {', '.join(map(str, paths))} (looked for every image type Pillow reads: {', '.join(suffixes)})")
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
    device: str = Device,
) -> None:
    """Classify images with one, two or all models; results on stdout, progress on stderr.

    An unreadable image is skipped and named; the others are still classified, and the exit code is 1.
    """
    dev = use_device(device)
    import numpy as np
    from rich.markup import escape
    from tqdm import tqdm

    from evbattery.core.config import get_settings
    from evbattery.core.imageio import ImageDecodeError, ImageTooLargeError, decode_image_with_alpha, load_mask
    from evbattery.core.io import write_json_report
    from evbattery.inference.agreement import agreement
    from evbattery.inference.cutouts import MaskSizeError, NoSegmenterError, cutout_for
    from evbattery.inference.service import ModelService

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    choice = model or os.environ.get("INPUT_TYPE") or "both"
    files = image_files(paths)
    if mask is not None and len(files) != 1:
        fail(f"--mask applies to one image, got {len(files)}")
    svc = ModelService.load(model_dir, device=dev, forwards=len(files))
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
                                 **({"agree": summary["agree"], "unsure": n in summary["unsure"],
                                     "unfamiliar": n in summary["unfamiliar"]} if summary else {})})
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
                    *[f"p_{c}" for c in classes], "novelty"])
        for r in rows:
            w.writerow([r["file"], r["model_used"], r["predicted_class"], f"{r['confidence']:.6f}",
                        r["mask_source"] or "", *[f"{r['probabilities'][c]:.6f}" for c in classes],
                        "" if r.get("novelty") is None else f"{r['novelty']:.4f}"])
        typer.echo(buf.getvalue(), nl=False)
    else:
        table(f"predictions ({', '.join(names)}; novelty > 1: unlike the model's training photos)",
              ["file", "model", "class", "confidence", "mask", "novelty"],
              [(r["file"], r["model_used"], r["predicted_class"], r["confidence"], r["mask_source"] or "-",
                "-" if r.get("novelty") is None else r["novelty"]) for r in rows])

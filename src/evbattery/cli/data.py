"""`evbattery data ...` commands: cutouts, importers (RecyBat24, COCO, folders) and check."""

from __future__ import annotations

from pathlib import Path

import typer

from evbattery.cli.app import DataDir, DataOut, data_app
from evbattery.core.config import SPLITS
from evbattery.core.console import fail, info


@data_app.command("cutouts")
def cutouts_cmd(data: Path = DataDir,
                split: list[str] = typer.Option(list(SPLITS), "--split", help="Splits to process.")) -> None:
    """(Re)make every cutout from its image and mask."""
    from evbattery.data.cutouts import write_cutouts
    from evbattery.data.layout import DatasetLayout

    if not data.is_dir():
        fail(f"dataset folder {data} does not exist")
    bad = [s for s in split if s not in SPLITS]
    if bad:
        fail(f"unknown split(s) {bad}; expected {list(SPLITS)}")
    try:
        n = write_cutouts(DatasetLayout(data), tuple(split))
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    info(f"wrote {n} cutouts under {data}")


# -- importers and check ---------------------------------------------------------------------------
OutDir = DataOut
Seed = typer.Option(42, "--seed", help="Seed of the split into train / val / test.")
Overwrite = typer.Option(False, "--overwrite", help="Replace a non-empty output folder.")
ValFraction = typer.Option(0.15, "--val-fraction", help="Share of source photos per class for val.")
TestFraction = typer.Option(0.15, "--test-fraction", help="Share of source photos per class for test.")


def _run_import(fn, out: Path, **kwargs) -> None:
    """Run an importer, turn its errors into one clear line, print the split x class table."""
    from evbattery.core.console import table
    from evbattery.data.importing import counts_rows

    try:
        summary = fn(out=out, **kwargs)
    except ValueError as e:  # DatasetError / CocoError: the message names the file and the problem
        fail(str(e))
    except OSError as e:  # disk full, permissions, a file where a folder must go
        fail(f"cannot write {out}: {e.filename or ''}: {e.strerror or e}")
    if summary.get("unannotated_skipped"):
        info(f"skipped {summary['unannotated_skipped']} image file(s) without a non-crowd annotation")
    if summary.get("shared_train_val_photos"):
        info(f"[yellow]warning[/]: {len(summary['shared_train_val_photos'])} source photo(s) are in both the "
             "official train and val sets of the release (listed in dataset.json)")
    counts = summary["counts"]
    table(f"imported {summary['images']} images into {out}", ["split", *next(iter(counts.values())), "total"],
          counts_rows(counts))


@data_app.command("import-recybat24")
def import_recybat24_cmd(src: Path = typer.Argument(..., help="The RecyBat24 folder (with train/ and val/)."),
                         out: Path = OutDir, seed: int = Seed, overwrite: bool = Overwrite) -> None:
    """Import RecyBat24: class from the file-name code, masks from COCO, official val -> val + test."""
    from evbattery.data.recybat24 import import_recybat24

    _run_import(import_recybat24, out, src=src, seed=seed, overwrite=overwrite)


@data_app.command("import-coco")
def import_coco_cmd(images: Path = typer.Option(..., "--images", help="Folder of the images (any depth)."),
                    annotations: Path = typer.Option(..., "--annotations", help="COCO instances JSON file."),
                    class_from: str = typer.Option("category", "--class-from",
                                                   help="Class from the annotation 'category' or the 'filename'."),
                    out: Path = OutDir, val_fraction: float = ValFraction, test_fraction: float = TestFraction,
                    seed: int = Seed, overwrite: bool = Overwrite) -> None:
    """Import a COCO export (Roboflow, CVAT...): mask = union of non-crowd instances, split by source photo."""
    from evbattery.data.folders import import_coco

    _run_import(import_coco, out, images=images, annotations=annotations, class_from=class_from,
                val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, overwrite=overwrite)


@data_app.command("import-folders")
def import_folders_cmd(src: Path = typer.Argument(..., help="Folder of <class>/<image> (or <split>/<class>/<image>)."),
                       out: Path = OutDir, val_fraction: float = ValFraction, test_fraction: float = TestFraction,
                       seed: int = Seed, overwrite: bool = Overwrite) -> None:
    """Import <class>/<image> trees; masks as <stem>_mask.png beside the image, masks/<class>/<stem>.png, or alpha."""
    from evbattery.data.folders import import_folders

    _run_import(import_folders, out, src=src, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                overwrite=overwrite)


@data_app.command("check")
def check_cmd(data: Path = DataDir) -> None:
    """Report broken files, mismatched/empty masks, unknown classes, cross-split duplicates; count per split x class."""
    from rich.markup import escape

    from evbattery.core.console import table
    from evbattery.core.io import write_json_report
    from evbattery.data.check import check_dataset
    from evbattery.data.importing import counts_rows

    res = check_dataset(data)
    for p in res.problems:
        info(f"[red]{p.kind}[/]: {escape(f'{p.path}: {p.detail}')}")
    if res.counts:
        table(f"{data}: images per split and class", ["split", *next(iter(res.counts.values())), "total"],
              counts_rows(res.counts))
    path = write_json_report("data_check", res.to_dict())
    if not res.ok:
        fail(f"{len(res.problems)} problem(s) in {data} (details in {path})")
    info(f"[green]ok[/]: no problems in {data} (report: {path})")


@data_app.command("real-photos")
def real_photos_cmd(
    manifest: Path = typer.Option(Path("benchmarks/real_photos/manifest.csv"), "--manifest",
                                  help="The real-photo benchmark's manifest (one row per photo)."),
    sources: list[Path] = typer.Option([], "--sources", help="Folders holding clones of the source repositories "
                                       "(<owner>/<name> or <owner>+<name>, plain or bare git); repeatable."),
    out: Path = typer.Option(Path("data/real_photos"), "--out", "-o",
                             help="Where <split>/<class>/<id> photos are written (shrunk to 512 px)."),
    download: bool = typer.Option(False, "--download", help="Fetch photos no clone has from their repository "
                                  "at the recorded commit (needs a network)."),
) -> None:
    """Rebuild the real-photo benchmark from its manifest: find each photo, check its hash, shrink, write."""
    from evbattery.data.real_photos import rebuild

    try:
        summary = rebuild(manifest, out, sources, download=download)
    except (ValueError, OSError) as e:
        fail(str(e))
    info(f"{summary['written']} photos written to {out} ({out / 'real_photos.json'})")
    bad = {k: summary[k] for k in ("missing", "hash_mismatch", "undecodable") if summary.get(k)}
    if bad:
        fail("; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items()))

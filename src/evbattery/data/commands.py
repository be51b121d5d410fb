"""`evbattery data ...` commands for existing datasets: cutouts (and importers / check)."""

from __future__ import annotations

from pathlib import Path

import typer

from evbattery.cli import data_app
from evbattery.config import SPLITS
from evbattery.console import fail, info

DataDir = typer.Option(Path("data/processed"), "--data", "-d", help="Dataset root (the folder with dataset.json).")


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

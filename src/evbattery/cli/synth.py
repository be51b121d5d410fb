"""`evbattery data synth|preview`: the built-in synthetic generator."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from evbattery.cli.app import DataDir, DataOut, data_app
from evbattery.core.console import fail, info

OutDir = DataOut


PreviewOut = typer.Option(None, "--out", "-o", help="PNG to write (default <reports>/synth_preview.png).")


def parse_shares(text: str) -> dict[str, float]:
    """'cylindrical=0.03,prismatic=0.2' -> {'cylindrical': 0.03, 'prismatic': 0.2}; ValueError naming a bad item."""
    shares = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        cls, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            shares[cls.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--packs: {item!r} is not <class>=<share>, e.g. prismatic=0.2") from None
    return shares


@data_app.command("synth")
def synth_cmd(
    out: Path = OutDir,
    n_train: int = typer.Option(900, "--n-train", help="Training images (balanced over classes)."),
    n_val: int = typer.Option(150, "--n-val", help="Validation images."),
    n_test: int = typer.Option(300, "--n-test", help="Test images (balanced over class x family)."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    bias: float = typer.Option(0.0, "--bias", help="ρ in [0,1]: share of train/val images on their class's home backgrounds."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed -> byte-identical files)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0 = all usable CPUs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    packs: str = typer.Option("", "--packs", help="Share of photos showing several cells as a unit, per class, "
                              "e.g. 'cylindrical=0.03,prismatic=0.2' (cylindrical packs, prismatic modules); "
                              "classes not named keep the default (cylindrical 0.03, prismatic 0)."),
    boards: float = typer.Option(0.0, "--boards", help="Share of photos with a circuit board and its leads beside "
                                 "the cells (a distractor, not in the mask)."),
    studio: float = typer.Option(0.0, "--studio", help="Share of photos on a product shot's white backdrop instead "
                                 "of their background family's surface."),
) -> None:
    """Generate synthetic battery photos with masks, cutouts and a dataset card."""
    from evbattery.data.layout import DatasetError
    from evbattery.data.synth.generate import generate_dataset, validate_args, validate_pack_shares

    try:
        validate_args(n_train, n_val, n_test, size, bias, workers or None)
        shares = validate_pack_shares(parse_shares(packs))
        t0 = time.perf_counter()
        generate_dataset(out, n_train, n_val, n_test, size, bias, seed, workers or None, overwrite, progress=True,
                         pack_shares=shares, board_share=boards, studio_share=studio)
    except (ValueError, DatasetError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted; nothing was written to {out}", code=130)
    n = n_train + n_val + n_test
    info(f"wrote {n} images (+ masks, cutouts, dataset.json) to {out} in {time.perf_counter() - t0:.1f} s")


@data_app.command("preview")
def preview_cmd(
    data: Path = DataDir,
    out: Path | None = PreviewOut,
    n: int = typer.Option(24, "--n", help="Number of photos on the sheet."),
    tile: int = typer.Option(160, "--tile", help="Tile side in pixels."),
    colors: int = typer.Option(0, "--colors", help="Palette PNG with this many colours (0 = full colour)."),
) -> None:
    """Contact sheet: photos with class + family captions and mask outlines."""
    from evbattery.core.io import reports_dir
    from evbattery.data.layout import DatasetError
    from evbattery.data.synth.preview import write_contact_sheet

    out = out or reports_dir() / "synth_preview.png"
    if n < 1:
        fail(f"--n must be >= 1, got {n}")
    if not 0 <= colors <= 256:
        fail(f"--colors must be in 0..256, got {colors}")
    if not data.is_dir():
        fail(f"dataset folder {data} does not exist (generate one with `evbattery data synth`)")
    try:
        write_contact_sheet(data, out, n, tile, colors)
    except (DatasetError, OSError, ValueError) as e:
        fail(str(e))
    info(f"wrote {out}")

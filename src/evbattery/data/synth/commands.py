"""`evbattery data synth|preview` and `evbattery bench synth|synth-difficulty`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer

from evbattery.cli import DataDir, DataOut, bench_app, data_app
from evbattery.console import fail, info, print_json, table

DIFFICULTY_LIMITS = {"images": 0.50, "cutouts": 0.55}
OutDir = DataOut
PreviewOut = typer.Option(None, "--out", "-o", help="PNG to write (default <reports>/synth_preview.png).")


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
) -> None:
    """Generate synthetic battery photos with masks, cutouts and a dataset card."""
    from evbattery.data.layout import DatasetError
    from evbattery.data.synth.generate import generate_dataset, validate_args

    try:
        validate_args(n_train, n_val, n_test, size, bias, workers or None)
        t0 = time.perf_counter()
        generate_dataset(out, n_train, n_val, n_test, size, bias, seed, workers or None, overwrite, progress=True)
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
    from evbattery.data.layout import DatasetError
    from evbattery.data.synth.preview import write_contact_sheet
    from evbattery.reports import reports_dir

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


@bench_app.command("synth")
def bench_synth_cmd(
    n: int = typer.Option(240, "--n", help="Images to generate."),
    size: int = typer.Option(256, "--size", help="Image side."),
    workers: int = typer.Option(2, "--workers", help="Worker processes."),
) -> None:
    """Generation speed (images/s, images + masks + cutouts written)."""
    from evbattery.data.synth.generate import generate_dataset
    from evbattery.reports import write_json_report

    if n < 3 or workers < 1:
        fail("--n must be >= 3 and --workers >= 1")
    import resource

    def cpu() -> float:  # this process + reaped worker processes
        return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        t0, c0 = time.perf_counter(), cpu()
        generate_dataset(Path(tmp) / "d", n_train=n, n_val=0, n_test=0, size=size, workers=workers, progress=True)
        dt, dc = time.perf_counter() - t0, cpu() - c0
    # the CPU is shared: CPU time per image says what idle cores would do, wall time what this run did
    res = {"images": n, "size": size, "workers": workers, "seconds": round(dt, 2),
           "images_per_s": round(n / dt, 1), "cpu_ms_per_image": round(1000 * dc / n, 1),
           "projected_images_per_s_idle": round(workers * n / max(dc, 1e-9), 1), "target_images_per_s": 100}
    path = write_json_report("bench_synth", res)
    print_json(res)
    table("synthetic generation", ["images", "size", "workers", "s", "img/s", "CPU ms/img", "img/s idle (proj.)"],
          [[n, size, workers, res["seconds"], res["images_per_s"], res["cpu_ms_per_image"],
            res["projected_images_per_s_idle"]]])
    info(f"wrote {path}")


@bench_app.command("synth-difficulty")
def bench_difficulty_cmd(
    n_train: int = typer.Option(900, "--n-train", help="Training images."),
    n_test: int = typer.Option(300, "--n-test", help="Test images."),
    size: int = typer.Option(128, "--size", help="Image side (colour statistics barely depend on it)."),
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0 = all CPUs)."),
) -> None:
    """Colour-histogram + logistic-regression baseline on ρ = 0 data (should stay near chance)."""
    from evbattery.data.synth.difficulty import histogram_baseline
    from evbattery.data.synth.generate import generate_dataset
    from evbattery.reports import write_json_report

    with tempfile.TemporaryDirectory(prefix="synth_difficulty_") as tmp:
        data = generate_dataset(Path(tmp) / "d", n_train=n_train, n_val=0, n_test=n_test, size=size, bias=0.0,
                                seed=seed, workers=workers or None, progress=True)
        res = histogram_baseline(data)
    res.update({"size": size, "seed": seed, "bias": 0.0, "chance": round(1 / 3, 4), "limits": DIFFICULTY_LIMITS})
    res["pass"] = all(res[k]["test_accuracy"] <= v for k, v in DIFFICULTY_LIMITS.items())
    path = write_json_report("synth_difficulty", res)
    print_json(res)
    table("colour-histogram baseline (test accuracy)", ["input", "accuracy", "limit"],
          [[k, res[k]["test_accuracy"], v] for k, v in DIFFICULTY_LIMITS.items()])
    info(f"wrote {path}")
    if not res["pass"]:
        fail("colour statistics predict the class above the limit: the generator leaks the class")

"""`evbattery bias` (the background-bias suite) and `evbattery experiment bias-sweep`."""

from __future__ import annotations

from pathlib import Path

import typer

from evbattery.cli.app import DataDir, Device, ModelDir, RunsDir, app, experiment_app, use_device
from evbattery.core.config import SPLITS
from evbattery.core.console import fail, info, table


@app.command("bias")
def bias_cmd(
    split: str = typer.Option("test", "--split", help="Split to build the variants from."),
    data: Path = DataDir,
    model_dir: Path = ModelDir,
    out: Path | None = typer.Option(None, "--out", help="Report folder (default <reports>/bias)."),
    seed: int = typer.Option(0, "--seed", help="Seed of partner choice, subsets and examples."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use a seeded subset of N images."),
    cam_limit: int = typer.Option(96, "--cam-limit", min=1, help="Images per model for Grad-CAM energy."),
    tracker: str = typer.Option("wandb", "--tracker", help="wandb | none."),
    runs_dir: Path = RunsDir,
    device: str = Device,
    onnx: str = typer.Option("auto", "--onnx", help="auto | on | off: the classifiers and the segmenter through "
                             "ONNX Runtime (fp32 models on CPUs without bf16, 1.4-4.7x torch there; auto: from 100 "
                             "forward passes per model)."),
) -> None:
    """Backgrounds-Challenge variants, BG-Gap, worst-group accuracy and Grad-CAM for every model."""
    dev = use_device(device)
    from evbattery.core.io import reports_dir

    out = out or reports_dir() / "bias"
    if split not in SPLITS:
        fail(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if onnx not in ("auto", "on", "off"):
        fail(f"--onnx {onnx!r}: expected auto, on or off")
    if not data.is_dir():
        fail(f"dataset folder {data} does not exist (generate one with `evbattery data synth`)")
    from evbattery.data.layout import DatasetError
    from evbattery.evaluation.bias import run_bias_suite
    from evbattery.evaluation.bias_report import log_to_tracker, summary_rows, write_bias_report
    from evbattery.models.checkpoint import CheckpointError

    try:
        result = run_bias_suite(data, model_dir, split=split, seed=seed, limit=limit, cam_limit=cam_limit,
                                device=dev, onnx=onnx)
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    paths = write_bias_report(result, out)
    if tracker != "none":
        log_to_tracker(result.summary, paths, runs_dir)
    from rich.markup import escape

    cols, rows = summary_rows(result.summary)
    # Labels like "cutouts[true]" would otherwise be read as rich markup and vanish.
    table(f"Background bias ({split}, {result.summary['n_images']} images; %)", cols,
          [[escape(c) for c in r] for r in rows])
    for note in result.summary["notes"]:
        info(f"note: {note}")
    info(f"wrote {paths['markdown']}, {paths['json']} and figures in {out}")


@experiment_app.command("bias-sweep")
def bias_sweep_cmd(
    levels: str = typer.Option("0,0.5,0.9,0.99", "--levels", help="Comma-separated bias levels rho in [0, 1]."),
    profile: str = typer.Option("quick", "--profile", help="quick (2-core CPU, <= 20 min) | medium (~46 min per level here) | full (224 px, 24,000 photos per level: a GPU) | smoke (tests)."),
    out: Path | None = typer.Option(None, "--out", help="Sweep folder: data, models, reports per level "
                                    "(default <reports>/sweep)."),
    seed: int = typer.Option(0, "--seed", help="Seed of data generation, training and the suite."),
    segmenter: Path | None = typer.Option(None, "--segmenter", help="Reuse this segmenter.pth instead of training."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the time estimate only."),
    device: str = Device,
) -> None:
    """For each rho: synthesise data, train the models (+ segmenter), run the bias suite; then plot."""
    dev = use_device(device)
    from evbattery.core.io import reports_dir
    from evbattery.experiments.sweep import PROFILES, estimate_seconds, run_sweep, sweep_rows

    out = out or reports_dir() / "sweep"
    if profile not in PROFILES:
        fail(f"--profile {profile!r}: expected one of {', '.join(PROFILES)}")
    try:
        rhos = [float(v) for v in levels.split(",") if v.strip()]
    except ValueError:
        fail(f"--levels {levels!r}: expected comma-separated numbers like 0,0.5,0.9")
    if not rhos or any(not 0.0 <= r <= 1.0 for r in rhos):
        fail(f"--levels {levels!r}: every level must be within [0, 1]")
    if segmenter is not None and not segmenter.is_file():
        fail(f"--segmenter {segmenter}: file not found")
    prof = PROFILES[profile]
    est = estimate_seconds(prof, len(rhos), train_segmenter=segmenter is None, device=dev)
    info(f"profile {profile}: {prof.describe()}")
    when = f"{est / 60:.0f} min" if est >= 120 else f"{est:.0f} s"
    info(f"estimated time for {len(rhos)} level(s) on this 2-core CPU: ~{when} (levels with results are skipped)")
    if dry_run:
        return
    try:
        summary = run_sweep(rhos, prof, out, seed=seed, segmenter=segmenter, device=dev)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(str(e))
    from rich.markup import escape

    cols, rows = sweep_rows(summary)
    table(f"Bias sweep ({profile}; %)", cols, [[escape(c) for c in r] for r in rows])
    info(f"wrote {out / 'sweep.md'}, {out / 'sweep.json'} and {out / 'sweep.png'}")

"""`evbattery ui` (the Streamlit app) and `evbattery demo` (what `make run` does: data, models, reports, servers)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from evbattery.cli import app
from evbattery.console import fail, info

# The quick profile: sized so a 2-core CPU without bf16 trains all three models in about 5 minutes
# (ResNet-18 fp32 + channels_last ≈ 30 img/s at 128 px, ≈ 40 img/s at 96 px).
QUICK = {
    "n_train": 900, "n_val": 150, "n_test": 300,  # per split, over the three classes
    "size": 160,          # generated photo side (px); models see image_size
    "bias": 0.9,          # ρ: class-correlated backgrounds in train/val, so the bias is visible
    "image_size": 96,
    "epochs": {"images": 4, "cutouts": 3, "masks": 3},
    "batch_size": 32,
    "img_per_s": 40.0,    # measured: 33-41 img/s at 96 px on 2 cores (demo run, 2026-11-25)
}


@dataclass
class Step:
    """One stage of the demo: skipped when done() is already true."""

    title: str
    module: str                # must be importable, else the demo names it and stops
    done: Callable[[], bool]
    run: Callable[[], None]
    estimate_s: float


def _require(module: str, step: str) -> None:
    """Fail with one clear line when a step's module is not there yet."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        fail(f"demo step '{step}' needs {module}, which cannot be imported ({e}); is the package complete?")


def _cli(*args: str) -> None:
    """Run an `evbattery` sub-command in a child process (its own progress and messages)."""
    rc = subprocess.call([sys.executable, "-m", "evbattery", *args])
    if rc != 0:
        fail(f"`evbattery {' '.join(args)}` failed with exit code {rc} (see its message above)")


def demo_steps(data: Path, model_dir: Path, reports: Path, p: dict = QUICK) -> list[Step]:
    """The demo as data → three trainings → evaluation → bias suite, each with its own done() check."""
    from evbattery.config import checkpoint_name
    from evbattery.data.layout import DatasetLayout

    layout = DatasetLayout(data)

    def synth() -> None:
        from evbattery.data.synth.generate import generate_dataset

        generate_dataset(data, n_train=p["n_train"], n_val=p["n_val"], n_test=p["n_test"], size=p["size"],
                         bias=p["bias"], seed=0, workers=os.cpu_count() or 1, overwrite=False, progress=True)

    def train(input_type: str) -> Callable[[], None]:
        def run() -> None:
            from evbattery.training.config import TrainConfig
            from evbattery.training.train import main as train_main

            train_main(TrainConfig(input_type=input_type, data_dir=str(data), model_dir=str(model_dir),
                                   epochs=p["epochs"][input_type], image_size=p["image_size"],
                                   batch_size=p["batch_size"], pretrained="auto", tracker="none"))
        return run

    dirs = ("--data", str(data), "--model-dir", str(model_dir))

    def evaluate() -> None:
        for name in ("images", "cutouts"):
            _cli("evaluate", "--model", name, *dirs, "--tracker", "none")
        _cli("evaluate", "--cross", *dirs, "--tracker", "none")

    def train_s(kind: str) -> float:
        from evbattery.evaluation.sweep import SEGMENTER_SPEED

        speed = p["img_per_s"] * (SEGMENTER_SPEED if kind == "masks" else 1.0)
        return p["n_train"] * p["epochs"][kind] / speed + 10

    files = {"images": model_dir / checkpoint_name("images"), "cutouts": model_dir / checkpoint_name("cutouts"),
             "masks": model_dir / "segmenter.pth"}
    return [
        Step(f"synthetic dataset (ρ={p['bias']}, {p['n_train']}/{p['n_val']}/{p['n_test']} images) → {data}",
             "evbattery.data.synth.generate", lambda: layout.card_path.is_file() and bool(layout.samples("test")),
             synth, 40),
        Step("train the full-image classifier", "evbattery.training.train", files["images"].is_file,
             train("images"), train_s("images")),
        Step("train the cutout classifier", "evbattery.training.train", files["cutouts"].is_file,
             train("cutouts"), train_s("cutouts")),
        Step("train the segmenter (masks for photos uploaded without one)", "evbattery.training.train",
             files["masks"].is_file, train("masks"), train_s("masks")),
        Step("evaluate every model on the test split (and every model x input kind)",
             "evbattery.evaluation.evaluate", (reports / "eval_cross_test.json").is_file, evaluate, 30),
        Step("background-bias suite → reports/bias", "evbattery.evaluation.bias",
             (reports / "bias" / "report.md").is_file, lambda: _cli("bias", *dirs, "--out", str(reports / "bias"), "--tracker", "none", "--cam-limit", "48"), 60),
    ]


@app.command("ui")
def ui_cmd(port: int = typer.Option(8501, help="Port of the UI (bound to 127.0.0.1)."),
           api_url: str = typer.Option(None, "--api-url", help="API the UI calls (default EVBATTERY_API_URL).")) -> None:
    """Serve the Streamlit UI on 127.0.0.1 (it calls the API over HTTP)."""
    from evbattery.config import get_settings
    from evbattery.ui.servers import port_free, ui_command

    if not port_free(port):
        fail(f"port {port} is already in use; pass --port to pick another")
    url = api_url or get_settings().api_url
    info(f"UI on http://127.0.0.1:{port}  (API: {url}); Ctrl-C to stop")
    try:
        raise typer.Exit(subprocess.call(ui_command(port), env={**os.environ, "EVBATTERY_API_URL": url}))
    except KeyboardInterrupt:
        info("stopped")


@app.command("demo")
def demo_cmd(api_port: int = typer.Option(8000, help="API port (127.0.0.1)."),
             ui_port: int = typer.Option(8501, help="UI port (127.0.0.1)."),
             serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the API and UI at the end.")) -> None:
    """The one-command demo (`make run`): build what is missing, then serve the API and the UI."""
    from evbattery.config import get_settings
    from evbattery.ui.servers import api_command, port_free, start, stop, ui_command, wait_until_up

    s = get_settings()
    steps = demo_steps(s.data_dir, s.model_dir, s.reports_dir)
    todo = [st for st in steps if not st.done()]
    est = sum(st.estimate_s for st in todo)
    info(f"[bold]evbattery demo[/]: {len(todo)} of {len(steps)} steps to build, about {est / 60:.0f} min on a "
         f"2-core CPU" + (" (everything is built; starting the servers)" if not todo else ""))
    t0 = time.monotonic()
    for i, step in enumerate(steps, 1):
        if step.done():
            info(f"[green]✓[/] {i}/{len(steps)} {step.title} (already built, skipped)")
            continue
        _require(step.module, step.title)
        info(f"[bold cyan]▶[/] {i}/{len(steps)} {step.title} (≈{step.estimate_s / 60:.1f} min)")
        t = time.monotonic()
        step.run()
        info(f"[green]✓[/] {i}/{len(steps)} {step.title} in {time.monotonic() - t:.0f} s")
    info(f"built in {(time.monotonic() - t0) / 60:.1f} min")
    if not serve:
        return
    for port in (api_port, ui_port):
        if not port_free(port):
            fail(f"port {port} is already in use (another demo?); stop it or pass --api-port/--ui-port")
    api_url = f"http://127.0.0.1:{api_port}"
    api = ui = None
    try:
        api = start(api_command(api_port))
        wait_until_up(f"{api_url}/health", api)
        ui = start(ui_command(ui_port), {"EVBATTERY_API_URL": api_url})
        wait_until_up(f"http://127.0.0.1:{ui_port}/_stcore/health", ui)
        info(f"\n[bold green]Ready.[/]  UI: http://127.0.0.1:{ui_port}   API: {api_url}/docs   "
             f"(total {(time.monotonic() - t0) / 60:.1f} min). Ctrl-C stops both.")
        while api.poll() is None and ui.poll() is None:
            time.sleep(0.5)
        fail(f"the {'API' if api.poll() is not None else 'UI'} server exited unexpectedly; see its log above")
    except RuntimeError as e:
        fail(str(e))
    except KeyboardInterrupt:
        info("stopping the API and the UI...")
    finally:
        stop(ui, api)

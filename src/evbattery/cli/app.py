"""The `evbattery` Typer apps and the options shared by several commands. The command modules of this package
register on these apps; they import the layers' heavy modules (torch) inside the command functions so
`evbattery --help` stays fast."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Battery-cell form-factor classification and background-bias analysis.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: import, synthesise, check, cutouts, preview.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: print JSON and a table, write reports/bench_*.json.")
export_app = typer.Typer(no_args_is_help=True, help="Export models (ONNX).")
experiment_app = typer.Typer(no_args_is_help=True, help="Multi-step experiments (bias sweep).")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(export_app, name="export")
app.add_typer(experiment_app, name="experiment")

# The folders commands read and write default to the EVBATTERY_* variables (config.py), so one export
# moves a whole workflow (data -> train -> evaluate -> bias -> serve); a flag still wins.
DataDir = typer.Option(Path("data/processed"), "--data", "-d", envvar="EVBATTERY_DATA_DIR",
                       help="Dataset root (the folder with dataset.json).")
DataOut = typer.Option(Path("data/processed"), "--out", "-o", envvar="EVBATTERY_DATA_DIR", help="Dataset root to write.")
ModelDir = typer.Option(Path("model"), "--model-dir", envvar="EVBATTERY_MODEL_DIR", help="Checkpoint folder.")
Device = typer.Option(None, "--device", envvar="EVBATTERY_DEVICE",
                      help="auto | cpu | cuda | cuda:N (auto: CUDA when there is one, else the CPU).")
RunsDir = typer.Option(Path("runs"), "--runs-dir", envvar="EVBATTERY_RUNS_DIR",
                       help="Per-run logs (config.json, metrics.jsonl).")


def use_device(spec: str | None):
    """The torch.device for --device (None: EVBATTERY_DEVICE, default auto); one clear line when it is not there."""
    from evbattery.core.config import DeviceError
    from evbattery.core.console import fail
    from evbattery.core.devices import resolve_device

    try:
        return resolve_device(spec)
    except DeviceError as e:
        fail(str(e))


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # one line per HTTP request (or ~170 per ONNX export) would drown the benchmarks' and the demo's output
        for noisy in ("httpx", "httpcore", "onnx_ir", "onnxscript"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

"""`evbattery serve`: the HTTP API under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from evbattery.cli.app import Device, app, use_device
from evbattery.core.console import fail


@app.command("serve")
def serve_cmd(host: str = typer.Option("127.0.0.1", help="Bind address."),
              port: int = typer.Option(8000, help="Port."),
              workers: int = typer.Option(1, min=1, help="Worker processes (each loads the models)."),
              model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder (sets "
                                             "EVBATTERY_MODEL_DIR)."),
              backend: str = typer.Option(None, "--backend", help="auto | torch | onnx | onnx-int8 (sets "
                                          "EVBATTERY_API_BACKEND; default auto: the checkpoints, run by ONNX "
                                          "Runtime on a CPU without bf16; the onnx ones need `evbattery export "
                                          "onnx [--int8]` first)."),
              device: str = Device) -> None:
    """Run the HTTP API with uvicorn (docs at /docs)."""
    import uvicorn

    from evbattery.inference.service import BACKENDS

    if model_dir is not None:
        os.environ["EVBATTERY_MODEL_DIR"] = str(model_dir)
    if backend is not None:
        if backend not in BACKENDS:
            fail(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        os.environ["EVBATTERY_API_BACKEND"] = backend
    os.environ["EVBATTERY_DEVICE"] = str(use_device(device))  # the worker processes load the models there
    uvicorn.run("evbattery.api.app:app", host=host, port=port, workers=workers)

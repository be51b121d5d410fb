"""Real servers for UI tests: tiny trained checkpoints, the API under uvicorn, Streamlit, on loopback."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from evbattery.experiments.servers import api_command, free_port, start, stop, ui_command, wait_until_up


@contextlib.contextmanager
def api_server(model_dir: Path, log_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """uvicorn serving the real API over model_dir on a free port -> (url, process)."""
    port = free_port()
    proc = start(api_command(port), {"EVBATTERY_MODEL_DIR": str(model_dir)}, log=log_dir / "api.log")
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ready", proc, timeout_s=60)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


@contextlib.contextmanager
def ui_server(api_url: str, data: Path, log_dir: Path) -> Iterator[str]:
    """Streamlit serving the UI on a free port, calling api_url -> UI url."""
    port = free_port()
    proc = start(ui_command(port), {"EVBATTERY_API_URL": api_url, "EVBATTERY_DATA_DIR": str(data)},
                 log=log_dir / "ui.log")
    try:
        wait_until_up(f"http://127.0.0.1:{port}/_stcore/health", proc, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)

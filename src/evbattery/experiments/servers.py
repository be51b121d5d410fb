"""Start the API and the UI as child processes on loopback, wait until they answer, stop them cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

UI_SCRIPT = Path(__file__).parents[1] / "ui" / "app.py"  # the Streamlit router (streamlit runs it by path)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def free_port() -> int:
    """A port the OS says is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_command(port: int) -> list[str]:
    """uvicorn serving evbattery.api.app:app on 127.0.0.1:port."""
    return [sys.executable, "-m", "uvicorn", "evbattery.api.app:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]


def ui_command(port: int) -> list[str]:
    """streamlit serving the UI on 127.0.0.1:port, headless, without usage statistics."""
    return [sys.executable, "-m", "streamlit", "run", str(UI_SCRIPT), "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def start(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start a child process with the given extra environment (output to log when given)."""
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child owns it until exit
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT if out else None)


def wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Poll url until it answers 200; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args[2:4])} exited with code {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def stop(*procs: subprocess.Popen | None, timeout_s: float = 10.0) -> None:
    """Terminate each process and wait for it; kill the ones that do not exit in time."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.terminate()
    for p in procs:
        if p is None:
            continue
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

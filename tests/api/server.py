"""A real uvicorn server on 127.0.0.1 (free port) in a background thread, stopped on exit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app: object, timeout: float = 120.0) -> Iterator[str]:
    """Serve app on a free loopback port; yields the base URL once /health answers."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"server on {base} did not start")
            time.sleep(0.05)
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)

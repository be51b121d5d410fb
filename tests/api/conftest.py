"""Fixtures: tiny trained checkpoints in a model folder (trained once per session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


@pytest.fixture(scope="session")
def api_url(model_dir: Path) -> Iterator[str]:
    """A real server over the tiny models (small limits so the bad-input cases stay cheap)."""
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings

    settings = ApiSettings(model_dir=model_dir, max_upload_mb=0.25, max_pixels=250_000, api_key=None)
    with running_server(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="session")
def client(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to the server."""
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c

"""Every result is also a file under reports/: small helpers to write them atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evbattery.config import get_settings
from evbattery.data.layout import atomic_write_text


def reports_dir() -> Path:
    """The reports folder (EVBATTERY_REPORTS_DIR, default reports/), created on demand."""
    d = get_settings().reports_dir
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_json_report(name: str, obj: Any, folder: Path | None = None) -> Path:
    """Write reports/<name>.json atomically and return its path."""
    path = (folder or reports_dir()) / f"{name}.json"
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
    return path

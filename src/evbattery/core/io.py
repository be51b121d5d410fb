"""Files written whole or not at all: atomic writes (temp file + fsync + rename), and the reports/ folder
where every result is also written."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from evbattery.core.config import get_settings


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of atomic_write_bytes."""
    atomic_write_bytes(path, text.encode())


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

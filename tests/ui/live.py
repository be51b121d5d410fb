"""Real servers for UI tests: tiny trained checkpoints, the API under uvicorn, Streamlit, on loopback."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from evbattery.config import checkpoint_name
from evbattery.ui.servers import api_command, free_port, start, stop, ui_command, wait_until_up


def train_tiny_models(model_dir: Path, data: Path, steps: int = 3) -> None:
    """A few Adam steps of ResNet-18 on the toy data, saved as best_model_images/cutouts.pth (64 px)."""
    import torch

    from evbattery.data.layout import DatasetLayout
    from evbattery.data.transforms import normalize, resize_uint8
    from evbattery.imageio import load_rgb
    from evbattery.models.checkpoint import default_meta, save_checkpoint
    from evbattery.models.classifier import build_classifier

    torch.manual_seed(0)
    samples = DatasetLayout(data).samples("train")
    classes = list(DatasetLayout(data).classes)
    y = torch.tensor([classes.index(s.cls) for s in samples])
    for name in ("images", "cutouts"):
        meta = {**default_meta(name), "image_size": 64, "pretrained": "none"}
        x = normalize(torch.stack([resize_uint8(load_rgb(s.path(name)), 64) for s in samples]), meta["mean"], meta["std"])
        model, _ = build_classifier(len(classes))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        save_checkpoint(model_dir / checkpoint_name(name), model.state_dict(), meta)


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

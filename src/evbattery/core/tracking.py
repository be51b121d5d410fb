"""Experiment tracking: W&B behind one small class (lazy import), plus plain files for every run.

Every run writes runs/<run-id>/config.json and metrics.jsonl whatever the tracker. W&B goes online
only when a key is configured (WANDB_API_KEY or ~/.netrc) AND EVBATTERY_WANDB=online; otherwise it runs
offline (`wandb sync runs/<id>/wandb/offline-run-*` uploads later) and never prompts or waits for the
network. WANDB_MODE=disabled (tests) or --tracker none skip W&B entirely.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evbattery.core.io import atomic_write_text

log = logging.getLogger(__name__)


def new_run_id(name: str) -> str:
    """<UTC time>-<name>-<pid>: sortable and unique per process."""
    return f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{name}-{os.getpid()}"


def wandb_key_configured() -> bool:
    """True when W&B has an API key from the environment or ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """online | offline | disabled: online only with a key and EVBATTERY_WANDB=online."""
    forced = os.environ.get("WANDB_MODE", "").lower()
    if forced in ("disabled", "offline"):
        return forced
    if os.environ.get("EVBATTERY_WANDB", "").lower() == "online" and wandb_key_configured():
        return "online"
    return "offline"


class Tracker:
    """Writes config.json + metrics.jsonl under runs/<run-id>/ and mirrors everything to W&B if enabled."""

    def __init__(self, runs_dir: Path | str, run_id: str, config: dict[str, Any], backend: str = "wandb",
                 project: str = "evbattery", job_type: str = "train") -> None:
        self.run_dir = Path(runs_dir) / run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        atomic_write_text(self.run_dir / "config.json", json.dumps(config, indent=2, default=str) + "\n")
        self._metrics = (self.run_dir / "metrics.jsonl").open("a")
        self.run: Any = None
        self.mode = "none"
        if backend == "wandb" and wandb_mode() != "disabled":
            self._start_wandb(config, project, job_type)

    def _start_wandb(self, config: dict[str, Any], project: str, job_type: str) -> None:
        self.mode = wandb_mode()
        wandb_dir = os.environ.get("WANDB_DIR") or str(self.run_dir)  # offline runs land inside runs/<id>/
        Path(wandb_dir).mkdir(parents=True, exist_ok=True)
        import wandb

        try:
            self.run = wandb.init(project=project, name=self.run_id, id=self.run_id, config=config,
                                  job_type=job_type, mode=self.mode, dir=wandb_dir,
                                  settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
        except (wandb.errors.Error, OSError) as e:  # no key, no network, a broken W&B dir: run on without W&B
            log.warning("W&B disabled for this run (%s: %s); metrics still go to %s", type(e).__name__, e,
                        self.run_dir / "metrics.jsonl")
            self.run, self.mode = None, "none"

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """One line of metrics.jsonl, and wandb.log with the same (namespaced) keys."""
        rec = {"step": step, **metrics} if step is not None else dict(metrics)
        self._metrics.write(json.dumps(rec, default=float) + "\n")
        self._metrics.flush()
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        """Final values (also written to runs/<id>/summary.json)."""
        atomic_write_text(self.run_dir / "summary.json", json.dumps(values, indent=2, default=str) + "\n")
        if self.run is not None:
            self.run.summary.update({k: v for k, v in values.items() if isinstance(v, (int, float, str))})

    def log_classification(self, prefix: str, y_true: list[int], y_pred: list[int], classes: list[str],
                           per_class: dict[str, dict[str, float]], samples: list[tuple[np.ndarray, int, int, float]]
                           | None = None) -> None:
        """Confusion matrix, per-class precision/recall/F1 table and sample predictions with images."""
        if self.run is None:
            return
        import wandb

        self.run.log({f"{prefix}/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=y_true, preds=y_pred, class_names=classes, title=f"{prefix} confusion matrix")})
        t = wandb.Table(columns=["class", "precision", "recall", "f1", "support"])
        for c in classes:
            r = per_class.get(c, {})
            t.add_data(c, r.get("precision"), r.get("recall"), r.get("f1-score", r.get("f1")), r.get("support"))
        self.run.log({f"{prefix}/per_class": t})
        if samples:
            st = wandb.Table(columns=["image", "true", "predicted", "confidence"])
            for img, yt, yp, conf in samples:
                st.add_data(wandb.Image(img), classes[yt], classes[yp], conf)
            self.run.log({f"{prefix}/samples": st})

    def log_images(self, prefix: str, images: dict[str, Path]) -> None:
        """Figures (PNG files) under <prefix>/<name> in W&B; on disk they are already in the report folder."""
        if self.run is None or not images:
            return
        import wandb

        self.run.log({f"{prefix}/{k}": wandb.Image(str(p)) for k, p in images.items()})

    def finish(self) -> None:
        """Close files and the W&B run."""
        self._metrics.close()
        if self.run is not None:
            self.run.finish()
            self.run = None

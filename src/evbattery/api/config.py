"""API settings: the project Settings (EVBATTERY_*) plus the API's own knobs."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from evbattery.core.config import Settings


class ApiSettings(Settings):
    """EVBATTERY_* settings read by the API at start-up."""

    # EVBATTERY_API_BACKEND: auto (the checkpoints; ONNX Runtime exported at start-up on a CPU without bf16) |
    # torch | onnx (<onnx_dir>/<name>.onnx) | onnx-int8 (<onnx_dir>/<name>.int8.onnx)
    api_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    onnx_dir: str | None = None         # EVBATTERY_ONNX_DIR (default <model_dir>/onnx)
    # EVBATTERY_MAX_BATCH: concurrent requests are run as one batch of up to this many (1 = no batching)
    max_batch: int = Field(default=16, ge=1)
    # EVBATTERY_THREADS_PER_MODEL: intra-op threads of each model (torch and ONNX Runtime); unset = half
    # the usable cores (at least 1), because /predict/both runs its two models side by side
    threads_per_model: int | None = Field(default=None, ge=1)
    # EVBATTERY_INFER_CONCURRENCY: requests being decoded/prepared at once (the model calls themselves
    # go through the per-model batching threads)
    infer_concurrency: int = Field(default=16, ge=1)
    required_models: str = "images,cutouts"  # /ready is 503 until these are loaded

    @property
    def max_upload_bytes(self) -> int:
        """Upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def model_threads(self) -> int:
        """threads_per_model, or half the usable cores (at least 1)."""
        if self.threads_per_model:
            return self.threads_per_model
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // 2)

    @property
    def required(self) -> list[str]:
        """Required model names."""
        return [n.strip() for n in self.required_models.split(",") if n.strip()]

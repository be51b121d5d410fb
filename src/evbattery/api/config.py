"""API settings: the project Settings (EVBATTERY_*) plus the API's own knobs."""

from __future__ import annotations

from pydantic import Field

from evbattery.config import Settings


class ApiSettings(Settings):
    """EVBATTERY_* settings read by the API at start-up."""

    api_backend: str = "torch"          # EVBATTERY_API_BACKEND: torch | onnx (<model_dir>/onnx/<name>.onnx)
    onnx_dir: str | None = None         # EVBATTERY_ONNX_DIR (default <model_dir>/onnx)
    infer_concurrency: int = Field(default=1, ge=1)  # EVBATTERY_INFER_CONCURRENCY: model calls at once
    required_models: str = "images,cutouts"  # /ready is 503 until these are loaded

    @property
    def max_upload_bytes(self) -> int:
        """Upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def required(self) -> list[str]:
        """Required model names."""
        return [n.strip() for n in self.required_models.split(",") if n.strip()]

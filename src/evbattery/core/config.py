"""Project-wide constants and settings (paths, classes, environment variables).

Environment variables (all optional):
  EVBATTERY_DATA_DIR      dataset root            (default data/processed)
  EVBATTERY_MODEL_DIR     checkpoints              (default model)
  EVBATTERY_REPORTS_DIR   reports                  (default reports)
  EVBATTERY_RUNS_DIR      per-run logs             (default runs)
  EVBATTERY_API_URL       API the UI talks to      (default http://127.0.0.1:8000)
  EVBATTERY_MAX_UPLOAD_MB upload limit of the API  (default 10)
  EVBATTERY_MAX_PIXELS    decompression-bomb limit (default 40 megapixels)
  EVBATTERY_API_KEY       if set, the API requires X-API-Key
  EVBATTERY_DEVICE        auto | cpu | cuda | cuda:N for training, evaluation and serving (default auto)
  EVBATTERY_DEVICE        auto | cpu | cuda | cuda:N (default auto = CUDA when available, else CPU)
  INPUT_TYPE              images | cutouts (seed-compatible default for train/evaluate/predict)
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CLASSES: tuple[str, ...] = ("cylindrical", "pouch", "prismatic")
SPLITS: tuple[str, ...] = ("train", "val", "test")
KINDS: tuple[str, ...] = ("images", "masks", "cutouts")

# The constant that fills everything outside the mask in a cutout (RGB, black).
CUTOUT_FILL: tuple[int, int, int] = (0, 0, 0)
# A mask pixel belongs to the cell when its value is >= MASK_THRESHOLD (masks are stored 0 / 255).
MASK_THRESHOLD = 128

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224


def checkpoint_name(model_name: str) -> str:
    """File name of a model's best checkpoint: best_model_<name>.pth (seed-compatible)."""
    return f"best_model_{model_name}.pth"


SEGMENTER_FILE = "segmenter.pth"

DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
DEVICE_HELP = f"one of {DEVICE_FORMS} (auto = CUDA when available, else CPU)"
_DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A --device value that is malformed or names a device this machine does not have."""


def check_device_spec(spec: str) -> str:
    """The spec, lower-cased and stripped, if it has a valid form (availability: core.devices.resolve_device)."""
    s = str(spec).strip().lower()
    if not _DEVICE_SPEC.match(s):
        raise DeviceError(f"--device {spec!r}: expected {DEVICE_HELP}")
    return s


class Settings(BaseSettings):
    """Runtime settings, read from EVBATTERY_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="EVBATTERY_", extra="ignore")

    data_dir: Path = Path("data/processed")
    model_dir: Path = Path("model")
    reports_dir: Path = Path("reports")
    runs_dir: Path = Path("runs")
    api_url: str = "http://127.0.0.1:8000"
    max_upload_mb: float = Field(default=10.0, gt=0)
    max_pixels: int = Field(default=40_000_000, gt=0)
    api_key: str | None = None
    device: str = "auto"  # EVBATTERY_DEVICE: auto | cpu | cuda | cuda:N (resolved by core.devices)


def get_settings() -> Settings:
    """Fresh settings (re-reads the environment, so tests can monkeypatch it)."""
    return Settings()

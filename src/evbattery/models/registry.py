"""The set of classifier models in a model folder, treated generically.

A model is any `best_model_<name>.pth` in the folder: "images", "cutouts", "images_debiased", ...
Its input type (photo or cutout) comes from the checkpoint metadata, never from the name.
"""

from __future__ import annotations

from pathlib import Path

from evbattery.core.config import SEGMENTER_FILE, checkpoint_name

PREFIX = "best_model_"
# Display / iteration order: the seed's two models first, then the rest alphabetically.
PREFERRED_ORDER = ("images", "cutouts", "images_debiased")


def model_order(name: str) -> tuple[int, str]:
    """Sort key putting the known models first."""
    return (PREFERRED_ORDER.index(name) if name in PREFERRED_ORDER else len(PREFERRED_ORDER), name)


def discover_models(model_dir: Path) -> dict[str, Path]:
    """{name: checkpoint path} for every best_model_<name>.pth in model_dir, in display order."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    found = {p.stem[len(PREFIX):]: p for p in model_dir.glob(f"{PREFIX}*.pth") if p.is_file()}
    return {k: found[k] for k in sorted(found, key=model_order)}


def model_path(model_dir: Path, name: str) -> Path:
    """Path of the checkpoint of a named model."""
    return Path(model_dir) / checkpoint_name(name)


def segmenter_path(model_dir: Path) -> Path:
    """Path of the segmenter checkpoint."""
    return Path(model_dir) / SEGMENTER_FILE

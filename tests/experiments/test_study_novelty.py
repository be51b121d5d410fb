"""scripts/study_novelty.py on known models: the colour reader answers its photo's background colour, so which
"real" photos it gets wrong is known in advance, and photos from another distribution are known to be far."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from known_models import photo, write_colour_dataset, write_colour_readers

from evbattery.core.config import CLASSES
from evbattery.core.imageio import save_png

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_novelty", ROOT / "scripts" / "study_novelty.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.study


def write_real(folder: Path, brighten: int = 0) -> Path:
    """Per class k, 2 photos on k's own background (the reader is right) and 2 on the next class's (it is wrong),
    from the same generator as the dataset with fresh seeds; `brighten` lifts every pixel (another distribution)."""
    for k, cls in enumerate(CLASSES):
        for i, bg in enumerate((k, k, (k + 1) % 3, (k + 1) % 3)):
            img, _ = photo(bg, k, seed=5000 + 10 * k + i)
            save_png(np.clip(img.astype(int) + brighten, 0, 255).astype(np.uint8), folder / cls / f"{i}.png")
    return folder


def test_novelty_scores_separate_another_distribution_and_count_the_known_mistakes(study, tmp_path):
    data = write_colour_dataset(tmp_path / "data", per_group=4, balanced=True, splits=("val", "test"))
    model = write_colour_readers(tmp_path / "models", names=(("images", "images"),)) / "best_model_images.pth"

    near = study(model, data, [write_real(tmp_path / "near")], n_ref=100, n_held=100)
    assert (near["n_ref"], near["n_held_out_synthetic"], near["n_real"], near["real_wrong"]) == (36, 36, 12, 6)
    far = study(model, data, [write_real(tmp_path / "far", brighten=120)], n_ref=100, n_held=100)
    for score in ("mahalanobis", "knn_cosine"):
        assert near[score]["real_beyond_synthetic_q99"] <= 0.25, near[score]  # same generator: mostly inside
        assert near[score]["auroc_real_vs_synthetic"] <= 0.8, near[score]
        assert far[score]["real_beyond_synthetic_q99"] == 1.0, far[score]  # brightened: all beyond
        assert far[score]["auroc_real_vs_synthetic"] == 1.0, far[score]
        assert set(near[score]) == {"real_beyond_synthetic_q95", "real_beyond_synthetic_q99",
                                    "auroc_real_vs_synthetic", "auroc_mistakes_on_real"}
    # logit k = 40 x mean of channel k: a cell of another colour than its background dilutes the background's
    # channel, so every mistake has a lower top probability than every right answer
    assert near["auroc_mistakes_by_low_top_probability"] == 1.0


def test_a_cutout_model_is_refused_with_one_line(study, tmp_path):
    data = write_colour_dataset(tmp_path / "data", per_group=1, balanced=True, splits=("val", "test"))
    model = write_colour_readers(tmp_path / "models", names=(("cutouts", "cutouts"),)) / "best_model_cutouts.pth"
    with pytest.raises(SystemExit, match="is a cutouts model; the study takes a full-image model"):
        study(model, data, [write_real(tmp_path / "near")], n_ref=1, n_held=1)

"""A trained probe's novelty score through every path a prediction takes: torch, ONNX Runtime attached for batch
jobs, the exported .onnx file and its int8 copy. The model is a real EfficientNet-Lite0 probe fitted on plain
colour photos; real photos of cells (the benchmark's committed ones) are nothing like them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from known_models import write_colour_dataset

from evbattery.core.imageio import load_rgb

pytestmark = pytest.mark.slow  # trains a probe

REAL = sorted((Path(__file__).parents[2] / "benchmarks" / "real_photos" / "photos").glob("*/*.jpg"))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from evbattery.training.config import TrainConfig
    from evbattery.training.train import main

    tmp = tmp_path_factory.mktemp("novelty_probe")
    data = write_colour_dataset(tmp / "data", per_group=7, balanced=True, splits=("train", "val", "test"))
    cfg = TrainConfig(data_dir=str(data), model_dir=str(tmp / "model"), runs_dir=str(tmp / "runs"), image_size=64,
                      workers=0, tracker="none", progress=False, arch="efficientnet_lite0", pretrained="auto",
                      train_layers="head")
    return Path(main(cfg)["checkpoint"]), data


def test_real_photos_are_unfamiliar_to_a_model_of_colour_photos(probe: tuple[Path, Path]) -> None:
    from evbattery.inference.predictor import Predictor
    from evbattery.models.checkpoint import load_checkpoint

    ckpt, data = probe
    meta = load_checkpoint(ckpt)["meta"]["novelty"]
    assert meta["n_train"] == 63 and meta["n_val"] == 63 and meta["components"] == 30, meta
    pred = Predictor.from_checkpoint(ckpt, fast=False)
    assert len(REAL) == 7
    real = pred.predict([load_rgb(p) for p in REAL])
    held = pred.predict([load_rgb(p) for p in sorted(data.glob("test/images/*/*"))])
    assert all(p.familiar is False and p.novelty > 2 for p in real), [p.novelty for p in real]
    assert np.mean([p.familiar for p in held]) >= 0.85, [p.novelty for p in held]
    assert max(p.novelty for p in held) < min(p.novelty for p in real)


def test_every_backend_reports_the_same_novelty(probe: tuple[Path, Path], tmp_path: Path) -> None:
    from evbattery.inference.cpu_onnx import attach_onnx_runtime
    from evbattery.inference.export import export_onnx
    from evbattery.inference.predictor import Predictor
    from evbattery.inference.quantize import agreement_report, quantize_int8

    ckpt, data = probe
    images = [load_rgb(p) for p in REAL] + [load_rgb(p) for p in sorted(data.glob("test/images/*/*"))[::7]]
    ref = Predictor.from_checkpoint(ckpt, fast=False)
    want = np.array([p.novelty for p in ref.predict(images)])
    attached = Predictor.from_checkpoint(ckpt, fast=False)
    assert attach_onnx_runtime(attached) is None and attached.backend == "onnx"
    np.testing.assert_allclose([p.novelty for p in attached.predict(images)], want, rtol=1e-3)
    fp32 = Predictor.from_onnx(export_onnx(ref, tmp_path / "images.onnx"))
    assert fp32.novelty is not None
    np.testing.assert_allclose([p.novelty for p in fp32.predict(images)], want, rtol=1e-3)
    calibration = [load_rgb(p) for p in sorted(data.glob("train/images/*/*"))[::3]]
    int8 = Predictor.from_onnx(quantize_int8(ref, tmp_path / "images.int8.onnx", calibration))
    got = np.array([p.novelty for p in int8.predict(images)])
    # int8 never hides a flag (the note would claim agreement); on these near-degenerate colour features its rounding
    # noise is large next to their spread, so it may add a few (2 of the 8 familiar photos, measured)
    assert (got[want > 1] > 1).all() and (got[:len(REAL)] > 2).all(), (got, want)
    assert (got[want <= 1] > 1).sum() <= 3, (got, want)
    assert int8.meta["quantization"]["novelty_threshold_shift"] > 0
    assert agreement_report(ref, int8, images)["familiar_agreement"] == ((got > 1) == (want > 1)).mean()


def test_a_model_without_a_score_reports_none(tmp_path: Path) -> None:
    from known_models import colour_predictor, photo

    pred = colour_predictor()
    out = pred.predict([photo(0, 1)[0]])[0]
    assert out.novelty is None and out.familiar is None and pred.graph is pred.model


def test_a_fine_tuned_model_gets_its_score_after_training(probe: tuple[Path, Path], tmp_path: Path) -> None:
    from toy_data import tiny_config

    from evbattery.inference.predictor import Predictor
    from evbattery.models.checkpoint import load_checkpoint
    from evbattery.training.train import main

    _, data = probe
    result = main(tiny_config(data, tmp_path, input_type="images", image_size=32))
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["meta"]["novelty"]["n_train"] == 63 and set(ckpt["novelty"]) >= {"means", "components", "threshold"}
    assert ckpt["meta"]["novelty"]["val_flagged"] <= 1 / 63 + 1e-9  # the val photos' 99th percentile is the line
    pred = Predictor.from_checkpoint(result["checkpoint"], fast=False)
    val = pred.predict([load_rgb(p) for p in sorted(data.glob("val/images/*/*"))])
    assert sum(not p.familiar for p in val) <= 1

"""int8 ONNX: `export onnx --int8` calibrates on the dataset, follows the fp32 model, and serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from serving_models import toy_test_files
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import load_rgb
from evbattery.inference.predictor import Predictor
from evbattery.inference.quantize import (
    agreement_report,
    calibration_images,
    cpu_has_vnni,
    default_reduce_range,
    quantize_int8,
)
from evbattery.inference.service import load_predictors


def test_export_int8_cli_writes_calibrated_models_and_agreement(model_dir: Path, toy_dataset: Path,
                                                               tmp_path: Path) -> None:
    out, models = tmp_path / "onnx", tmp_path / "model"
    models.mkdir()
    for name in ("images", "cutouts"):  # two models: a photo model and a cutout model (calibrated on cutouts)
        shutil.copy(model_dir / f"best_model_{name}.pth", models)
    res = CliRunner().invoke(app, ["export", "onnx", "--model-dir", str(models), "--out", str(out), "--int8",
                                   "--data", str(toy_dataset), "--calib-n", "12", "--check-n", "18"],
                             env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})
    assert res.exit_code == 0, res.output
    for name in ("images", "cutouts"):
        assert (out / f"{name}.onnx").is_file() and (out / f"{name}.int8.onnx").is_file()
    report = json.loads((tmp_path / "reports" / "export_onnx.json").read_text())
    int8 = {r["model"]: r for r in report["files"] if r["precision"] == "int8"}
    fp32 = {r["model"]: r for r in report["files"] if r["precision"] == "fp32"}
    for name, row in int8.items():
        # these serving models are a random backbone + a fitted head, too ill-conditioned for int8 to follow
        # (see the next test for a trained model); here the report itself is checked
        assert row["vs_fp32"]["images"] == 18 and 0.0 <= row["vs_fp32"]["top1_agreement"] <= 1.0
        assert row["mb"] < fp32[name]["mb"] / 2  # int8 weights: about a quarter of the fp32 file

    assert set(int8) == {"images", "cutouts"}
    preds = load_predictors(models, backend="onnx-int8", onnx_dir=out)
    assert {p.precision for p in preds.values()} == {"int8"} and preds["cutouts"].input_type == "cutouts"
    q = preds["cutouts"].meta["quantization"]
    assert q["calibration_images"] == 12 and q["calibration_source"] == str(toy_dataset)
    images = [load_rgb(p) for p, _, _ in toy_test_files(toy_dataset)]
    batch = torch.stack([preds["images"].prepare(im) for im in images[:5]])
    assert preds["images"].logits(batch).shape == (5, 3)  # dynamic batch axis survives quantization


@pytest.mark.slow
def test_int8_follows_a_trained_fp32_model(toy_dataset: Path, tmp_path: Path) -> None:
    """A ResNet-18 really trained (2 epochs, 32 px) keeps its answers after calibrated int8 quantization."""
    from evbattery.training.config import TrainConfig
    from evbattery.training.train import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 1 thread trains faster than 2 on a shared 2-core machine
    try:
        main(TrainConfig(data_dir=str(toy_dataset), model_dir=str(tmp_path / "model"), runs_dir=str(tmp_path / "runs"),
                         input_type="images", epochs=2, batch_size=8, image_size=32, workers=0, tracker="none",
                         pretrained="none", progress=False))
    finally:
        torch.set_num_threads(threads)
    fp32 = Predictor.from_checkpoint(tmp_path / "model" / "best_model_images.pth", fast=False)
    calib = calibration_images(toy_dataset, "images", 36)
    assert len(calib) == 36
    path = quantize_int8(fp32, tmp_path / "images.int8.onnx", calib, "toy")  # weight bits chosen for this CPU
    int8 = Predictor.from_onnx(path)
    assert int8.precision == "int8" and int8.image_size == 32
    assert int8.meta["quantization"]["weight_bits"] == (7 if default_reduce_range() else 8)
    # every photo of the set (72), not only the 18 test ones: with 18 one near-tie is 5.6 points of agreement
    photos = [load_rgb(p) for p in sorted(toy_dataset.glob("*/images/*/*"))]
    assert len(photos) == 72
    report = agreement_report(fp32, int8, photos)
    # measured on AVX2 without VNNI (7-bit weights): 0.94 agreement, mean probability gap 0.039; with 8-bit
    # weights there the same model gave 0.86 / 0.092 (saturating int16 accumulation)
    assert report["top1_agreement"] >= 0.85 and report["mean_prob_diff"] < 0.07, report
    with pytest.raises(ValueError, match="calibration image"):
        quantize_int8(fp32, tmp_path / "x.onnx", [], "none")


def test_weight_bits_follow_the_cpu_and_the_flag(model_dir: Path, toy_dataset: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """7-bit weights on x86 without VNNI, 8-bit with it; --full-range / --reduce-range override; recorded."""
    import evbattery.inference.quantize as quantize

    monkeypatch.setattr(quantize.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: False)
    assert quantize.default_reduce_range() is True
    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: True)
    assert quantize.default_reduce_range() is False
    monkeypatch.setattr(quantize.platform, "machine", lambda: "aarch64")
    assert quantize.default_reduce_range() is False
    zen3, zen4 = tmp_path / "zen3", tmp_path / "zen4"  # flag lines as /proc/cpuinfo writes them
    zen3.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma vaes\n")
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_vnni(zen3) is False and cpu_has_vnni(zen4) is True
    assert cpu_has_vnni(tmp_path / "no-such-file") is False  # not Linux: no claim of VNNI

    models = tmp_path / "model"
    models.mkdir()
    shutil.copy(model_dir / "best_model_images.pth", models)
    for flag, bits in (("--full-range", 8), ("--reduce-range", 7)):
        out = tmp_path / flag.strip("-")
        res = CliRunner().invoke(app, ["export", "onnx", "--model-dir", str(models), "--out", str(out), "--int8",
                                       "--data", str(toy_dataset), "--calib-n", "4", "--check-n", "0", flag],
                                 env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})
        assert res.exit_code == 0, res.output
        assert f"{bits}-bit weights" in res.output
        assert Predictor.from_onnx(out / "images.int8.onnx").meta["quantization"]["weight_bits"] == bits
        report = json.loads((tmp_path / "reports" / "export_onnx.json").read_text())
        assert [r["weight_bits"] for r in report["files"] if r["precision"] == "int8"] == [bits]


def test_onnx_int8_backend_names_the_missing_file(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"images\.int8\.onnx not found .*export onnx --int8"):
        load_predictors(model_dir, backend="onnx-int8", onnx_dir=tmp_path, names=["images"])
    from evbattery.inference.service import ModelService

    svc = ModelService.load(model_dir, backend="onnx-int8", onnx_dir=tmp_path)  # records, does not raise
    assert svc.predictors == {} and "images.int8.onnx not found" in svc.errors["images"]
    assert svc.errors["models"] == f"none of the 3 models in {model_dir} could be loaded (see each model's error)"

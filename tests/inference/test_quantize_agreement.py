"""int8 agreement must measure the int8 model (issue 25, breakage 4: the export compared fp32 with itself).

A deliberately damaged copy of a model (its class scores rotated by one) must score far lower agreement
with the fp32 model than the faithful int8 export, both through `agreement_report` and through the
report `evbattery export onnx --int8` writes. The models are hand-built colour readers
(tests/known_models.py), which int8 follows exactly, so the faithful export's agreement is known: 1.0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from known_models import (
    colour_meta,
    colour_reader_state_dict,
    damaged_state_dict,
    write_colour_dataset,
    write_colour_readers,
)
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import load_rgb
from evbattery.inference.predictor import Predictor
from evbattery.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colour_q") / "data", per_group=2, balanced=True,
                                splits=("train", "val"))


def test_damaged_copy_scores_lower_agreement_than_the_faithful_int8(colour_data: Path, tmp_path: Path) -> None:
    from evbattery.inference.quantize import agreement_report, calibration_images, quantize_int8

    models = write_colour_readers(tmp_path / "model", names=(("images", "images"),))
    save_checkpoint(tmp_path / "damaged.pth", damaged_state_dict(), colour_meta("images", "images"))
    fp32 = Predictor.from_checkpoint(models / "best_model_images.pth", fast=False)
    damaged = Predictor.from_checkpoint(tmp_path / "damaged.pth", fast=False)
    calib = calibration_images(colour_data, "images", 18)
    faithful_q = Predictor.from_onnx(quantize_int8(fp32, tmp_path / "faithful.int8.onnx", calib, "colours"))
    damaged_q = Predictor.from_onnx(quantize_int8(damaged, tmp_path / "damaged.int8.onnx", calib, "colours"))
    photos = [load_rgb(p) for p in sorted(colour_data.glob("val/images/*/*"))]
    assert len(photos) == 18

    faithful = agreement_report(fp32, faithful_q, photos)
    broken = agreement_report(fp32, damaged_q, photos)
    assert faithful["images"] == broken["images"] == 18
    assert faithful["top1_agreement"] == 1.0, faithful
    assert broken["top1_agreement"] == 0.0, broken  # every answer moved to the next class
    assert broken["mean_prob_diff"] > faithful["mean_prob_diff"] + 0.3
    assert agreement_report(fp32, fp32, photos)["top1_agreement"] == 1.0  # and a model agrees with itself
    assert agreement_report(fp32, fp32, photos)["max_prob_diff"] == 0.0
    assert agreement_report(fp32, damaged_q, []) == {"images": 0}


@pytest.mark.slow
def test_export_report_measures_the_int8_file_it_wrote(colour_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`export onnx --int8`: vs_fp32 is 1.0 for a faithful export and ~0 when the int8 file is a damaged model."""
    import evbattery.inference.quantize as quantize

    models = write_colour_readers(tmp_path / "model", names=(("cutouts", "cutouts"),))
    damaged = tmp_path / "damaged.pth"
    save_checkpoint(damaged, damaged_state_dict(), colour_meta("cutouts", "cutouts"))
    real_quantize = quantize.quantize_int8

    def run(out: Path) -> dict:
        res = CliRunner().invoke(app, ["export", "onnx", "--model-dir", str(models), "--out", str(out), "--int8",
                                       "--data", str(colour_data), "--calib-n", "9", "--check-n", "18"],
                                 env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / "reports" / "export_onnx.json").read_text())
        (row,) = [r for r in report["files"] if r["precision"] == "int8"]
        return row["vs_fp32"]

    faithful = run(tmp_path / "faithful")
    # The same command, but the int8 file it writes is quantized from the damaged copy (exported afresh: the
    # command hands over its fp32 export of the faithful model).
    monkeypatch.setattr(quantize, "quantize_int8", lambda pred, out_path, images, fp32_onnx=None, **kw: real_quantize(
        Predictor.from_checkpoint(damaged, fast=False), out_path, images, **kw))
    broken = run(tmp_path / "broken")
    assert faithful["images"] == broken["images"] == 18
    assert faithful["top1_agreement"] == 1.0, faithful
    assert broken["top1_agreement"] == 0.0, broken


def test_agreement_report_on_a_partial_disagreement() -> None:
    """Two torch models that differ on two classes of three: agreement 1/3, gaps as computed here, 4 decimals."""
    from known_models import photo

    from evbattery.inference.quantize import agreement_report

    sd = colour_reader_state_dict()
    swap = torch.tensor([1, 0, 2])  # cylindrical <-> pouch; prismatic stays
    ref = Predictor(_model(sd), colour_meta("images", "images"), fast=False)
    cand = Predictor(_model(sd | {"fc.weight": sd["fc.weight"][swap]}), colour_meta("images", "images"), fast=False)
    photos = [photo(k, k, seed=k)[0] for k in range(3)]
    report = agreement_report(ref, cand, photos)
    assert report["images"] == 3 and report["top1_agreement"] == 0.3333
    a, b = ref.predict(photos), cand.predict(photos)
    assert [p.predicted_class for p in a] == ["cylindrical", "pouch", "prismatic"]
    assert [p.predicted_class for p in b] == ["pouch", "cylindrical", "prismatic"]
    gaps = [max(abs(x.probabilities[c] - y.probabilities[c]) for c in x.probabilities) for x, y in zip(a, b, strict=True)]
    assert report["max_prob_diff"] == round(max(gaps), 4) and 0.5 < report["max_prob_diff"] < 1
    assert report["mean_prob_diff"] == round(sum(gaps) / 3, 4) and 0.3 < report["mean_prob_diff"] < 0.7


def _model(sd: dict) -> torch.nn.Module:
    from evbattery.models.classifier import new_classifier

    m = new_classifier(3)
    m.load_state_dict(sd)
    return m.eval()

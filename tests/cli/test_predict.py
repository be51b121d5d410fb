"""`evbattery predict` formats, folders, masks, and the seed form `python -m evbattery.predict`."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetLayout
from evbattery.inference.predictor import Predictor
from evbattery.models.registry import discover_models


def _run(args: list[str], tmp_path: Path) -> str:
    res = CliRunner().invoke(app, args, env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})
    assert res.exit_code == 0, res.output
    return res.stdout


def test_predict_json_folder_all_models(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    folder = toy_dataset / "test" / "images"
    samples = DatasetLayout(toy_dataset).samples("test")
    out = json.loads(_run(["predict", str(folder), "--model", "images", "--format", "json",
                           "--model-dir", str(model_dir), "--batch-size", "5"], tmp_path))
    assert len(out) == len(samples)
    pred = Predictor.from_checkpoint(discover_models(model_dir)["images"])
    expected = {str(s.image): p.predicted_class
                for s, p in zip(samples, pred.predict([load_rgb(s.image) for s in samples]), strict=True)}
    assert {r["file"]: r["predicted_class"] for r in out} == expected
    assert (tmp_path / "reports" / "predictions.json").is_file()


def test_predict_csv_with_mask_and_all(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    s = DatasetLayout(toy_dataset).samples("test")[0]
    text = _run(["predict", str(s.image), "--mask", str(s.mask), "--model", "all", "--format", "csv",
                 "--model-dir", str(model_dir)], tmp_path)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["model"] for r in rows] == ["images", "cutouts", "images_debiased"]
    assert rows[1]["mask_source"] == "uploaded" and rows[0]["mask_source"] == ""
    assert abs(sum(float(rows[0][f"p_{c}"]) for c in ("cylindrical", "pouch", "prismatic")) - 1) < 1e-4


def test_predict_errors_are_one_line(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "missing[red].jpg"), "--model-dir", str(model_dir)])
    assert res.exit_code != 0 and "missing[red].jpg" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["predict", str(toy_dataset / "test"), "--model", "nope",
                                   "--model-dir", str(model_dir)])
    assert res.exit_code != 0 and "nope" in res.output
    for cmd in (["serve", "--backend", "gpu"], ["bench", "api", "--backend", "gpu"]):
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code != 0 and "--backend 'gpu': expected one of auto, torch, onnx, onnx-int8" in res.output


def test_predict_skips_unreadable_files_and_says_so(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    samples = DatasetLayout(toy_dataset).samples("test")[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    for s in samples:
        shutil.copy(s.image, folder / s.image.name)
    (folder / "a_not_an_image[red].jpg").write_text("hello")  # "[red]" is shown as it is, not read as markup
    (folder / "b_truncated.jpg").write_bytes(samples[0].image.read_bytes()[:200])
    reports = tmp_path / "reports"
    res = CliRunner().invoke(app, ["predict", str(folder), "--model", "images", "--format", "json",
                                   "--model-dir", str(model_dir), "--batch-size", "2"],
                             env={"EVBATTERY_REPORTS_DIR": str(reports)})
    assert res.exit_code == 1
    assert "a_not_an_image[red].jpg" in res.stderr and "b_truncated.jpg" in res.stderr
    assert "2 of 5 files could not be read" in res.stderr and "Traceback" not in res.output
    rows = json.loads(res.stdout)
    assert sorted(Path(r["file"]).name for r in rows) == sorted(s.image.name for s in samples)
    report = json.loads((reports / "predictions.json").read_text())
    assert [Path(s["file"]).name for s in report["skipped"]] == ["a_not_an_image[red].jpg", "b_truncated.jpg"]
    assert len(report["predictions"]) == 3
    # Nothing readable at all: still one clear line per file, no empty table, exit 1.
    res = CliRunner().invoke(app, ["predict", str(folder / "a_not_an_image[red].jpg"), "--model-dir", str(model_dir)],
                             env={"EVBATTERY_REPORTS_DIR": str(reports)})
    assert res.exit_code == 1 and "1 of 1 files could not be read" in res.stderr and res.stdout == ""


def test_seed_form_input_type(model_dir: Path, toy_dataset: Path, tmp_path: Path) -> None:
    s = DatasetLayout(toy_dataset).samples("test")[0]
    env = {**os.environ, "INPUT_TYPE": "images", "EVBATTERY_MODEL_DIR": str(model_dir),
           "EVBATTERY_REPORTS_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "evbattery.predict", str(s.image), "--format", "json"],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["model_used"] == "images"

"""Every documented EVBATTERY_* variable (config.py, api/config.py, tracking.py) set through the real environment
(monkeypatch.setenv) and seen to take effect through the CLI, the API app or the settings reader (issue 25).

EVBATTERY_DATA_DIR / MODEL_DIR / RUNS_DIR / REPORTS_DIR: `evbattery train` and `predict` with no folder flags.
EVBATTERY_API_URL: the settings the UI reads. EVBATTERY_MAX_UPLOAD_MB, MAX_PIXELS, API_KEY, API_BACKEND, ONNX_DIR,
MAX_BATCH, THREADS_PER_MODEL, INFER_CONCURRENCY, REQUIRED_MODELS: the API app built with no settings object.
EVBATTERY_WANDB: the tracker mode. (INPUT_TYPE: test_predict_cli.test_seed_form_input_type; EVBATTERY_STEP_DELAY:
test_resume_ddp.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from known_models import photo, write_colour_readers
from PIL import Image
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import save_png


def _png(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def colour_dir(tmp_path: Path) -> Path:
    return write_colour_readers(tmp_path / "model")


def test_settings_reader_takes_every_project_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from evbattery.core.config import get_settings

    values = {"EVBATTERY_DATA_DIR": tmp_path / "d", "EVBATTERY_MODEL_DIR": tmp_path / "m",
              "EVBATTERY_REPORTS_DIR": tmp_path / "r", "EVBATTERY_RUNS_DIR": tmp_path / "runs"}
    for k, v in values.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("EVBATTERY_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("EVBATTERY_MAX_UPLOAD_MB", "2.5")
    monkeypatch.setenv("EVBATTERY_MAX_PIXELS", "1234")
    monkeypatch.setenv("EVBATTERY_API_KEY", "k")
    s = get_settings()
    assert (s.data_dir, s.model_dir, s.reports_dir, s.runs_dir) == tuple(values.values())
    assert (s.api_url, s.max_upload_mb, s.max_pixels, s.api_key) == ("http://127.0.0.1:9", 2.5, 1234, "k")
    monkeypatch.setenv("EVBATTERY_MAX_PIXELS", "0")  # invalid values are refused, not ignored
    with pytest.raises(ValueError, match="max_pixels"):
        get_settings()


def test_folders_from_the_environment_drive_predict(colour_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    img, _ = photo(1, 1)
    save_png(img, tmp_path / "cell.png")
    monkeypatch.setenv("EVBATTERY_MODEL_DIR", str(colour_dir))
    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path / "reports"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # nothing under ./model or ./reports: the variables must be used
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "cell.png"), "--model", "images", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["predicted_class"] == "pouch"
    report = json.loads((tmp_path / "reports" / "predictions.json").read_text())
    assert report["model_dir"] == str(colour_dir)
    assert not (tmp_path / "elsewhere" / "model").exists() and not (tmp_path / "elsewhere" / "reports").exists()


@pytest.mark.slow
def test_folders_from_the_environment_drive_train(toy_dataset: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_DATA_DIR", str(toy_dataset))
    monkeypatch.setenv("EVBATTERY_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EVBATTERY_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "--input-type", "cutouts", "--epochs", "1", "--image-size", "32",
                                   "--batch-size", "8", "--limit-train", "8", "--workers", "0", "--tracker", "none",
                                   "--pretrained", "none", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "models" / "best_model_cutouts.pth").is_file()
    (run,) = list((tmp_path / "runs").iterdir())
    assert json.loads((run / "config.json").read_text())["data_dir"] == str(toy_dataset)
    assert not (tmp_path / "model").exists()  # not the default ./model


def test_api_url_reaches_the_ui_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from evbattery.ui.client import api_url

    monkeypatch.setenv("EVBATTERY_API_URL", "http://127.0.0.1:65001")
    assert api_url() == "http://127.0.0.1:65001"


def test_wandb_variable_sets_the_tracker_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from evbattery.core.tracking import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("EVBATTERY_WANDB", "online")
    assert wandb_mode() == "online"
    monkeypatch.setenv("EVBATTERY_WANDB", "")
    assert wandb_mode() == "offline"


@pytest.fixture()
def env_app(colour_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API built from the environment alone (create_app() without settings), ONNX backend."""
    from evbattery.api.app import create_app
    from evbattery.inference.export import export_onnx

    onnx_dir = tmp_path / "exported"
    for name in ("images", "cutouts"):
        export_onnx(colour_dir / f"best_model_{name}.pth", onnx_dir / f"{name}.onnx")
    for k, v in {"EVBATTERY_MODEL_DIR": str(colour_dir), "EVBATTERY_API_BACKEND": "onnx",
                 "EVBATTERY_ONNX_DIR": str(onnx_dir), "EVBATTERY_MAX_UPLOAD_MB": "0.02",
                 "EVBATTERY_MAX_PIXELS": "3000", "EVBATTERY_API_KEY": "s3cret", "EVBATTERY_MAX_BATCH": "3",
                 "EVBATTERY_THREADS_PER_MODEL": "1", "EVBATTERY_INFER_CONCURRENCY": "2",
                 "EVBATTERY_REQUIRED_MODELS": "images,cutouts,images_debiased"}.items():
        monkeypatch.setenv(k, v)
    with TestClient(create_app()) as client:
        yield client


@pytest.mark.slow
def test_api_variables_take_effect(env_app: TestClient) -> None:
    key = {"X-API-Key": "s3cret"}
    img, mask = photo(0, 2)  # 48 x 48 = 2,304 pixels: under EVBATTERY_MAX_PIXELS
    files = {"file": ("p.png", _png(img), "image/png"), "mask": ("m.png", _png(mask), "image/png")}
    assert env_app.post("/predict/both", files=files).status_code == 401  # EVBATTERY_API_KEY
    ok = env_app.post("/predict/both", files=files, headers=key)
    assert ok.status_code == 200, ok.text
    assert (ok.json()["image_model"]["predicted_class"], ok.json()["cutout_model"]["predicted_class"]) == \
        ("cylindrical", "prismatic")
    models = {m["name"]: m for m in env_app.get("/models", headers=key).json()["models"]}
    assert {m["backend"] for m in models.values()} == {"onnx"}  # EVBATTERY_API_BACKEND
    assert all("/exported/" in m["source"] for m in models.values())  # EVBATTERY_ONNX_DIR
    ready = env_app.get("/ready")
    assert ready.status_code == 503 and "images_debiased" in ready.json()["missing"]  # EVBATTERY_REQUIRED_MODELS
    big, _ = photo(0, 0, size=64)  # 4,096 pixels: over EVBATTERY_MAX_PIXELS
    r = env_app.post("/predict/image", files={"file": ("b.png", _png(big), "image/png")}, headers=key)
    assert r.status_code == 413 and "3000" in r.text
    noise = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)  # ~30 kB: over 0.02 MB
    r = env_app.post("/predict/image", files={"file": ("n.png", _png(noise), "image/png")}, headers=key)
    assert r.status_code == 413
    s = env_app.app.state.settings
    assert (s.max_batch, s.model_threads, s.infer_concurrency) == (3, 1, 2)
    svc = env_app.app.state.service
    assert svc.batcher.max_batch == 3 and svc.batcher.torch_threads == 1  # EVBATTERY_MAX_BATCH / THREADS_PER_MODEL
    assert env_app.app.state.limiter.total_tokens == 2  # EVBATTERY_INFER_CONCURRENCY

"""The API on the ONNX Runtime int8 backend, under concurrent load: batched, and the same answers."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from helpers import files
from serving_models import toy_test_files

from evbattery.core.imageio import load_rgb
from evbattery.inference.predictor import Predictor
from evbattery.inference.quantize import calibration_images, int8_path, quantize_int8
from evbattery.models.registry import discover_models


def _metric(text: str, name: str, model: str) -> float:
    m = re.search(rf'^{name}{{model="{model}"}} (\S+)$', text, re.M)
    assert m, f"{name} for {model} not in /metrics"
    return float(m.group(1))


def test_int8_backend_serves_concurrent_requests_in_batches(model_dir: Path, toy_dataset: Path,
                                                            tmp_path: Path) -> None:
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings

    paths = discover_models(model_dir)
    for name in ("images", "cutouts"):
        fp32 = Predictor.from_checkpoint(paths[name], fast=False)
        quantize_int8(fp32, int8_path(tmp_path, name), calibration_images(toy_dataset, fp32.input_type, 12), "toy")
    int8 = {n: Predictor.from_onnx(int8_path(tmp_path, n)) for n in ("images", "cutouts")}
    uploads = [(img.read_bytes(), mask.read_bytes()) for img, mask, _ in toy_test_files(toy_dataset)]
    settings = ApiSettings(model_dir=model_dir, api_backend="onnx-int8", onnx_dir=str(tmp_path), max_batch=8,
                           api_key=None)
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base, timeout=60) as client:
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["images"]["backend"] == "onnx" and models["images"]["precision"] == "int8"
        assert "images_debiased" not in models  # no int8 file for it: reported, not served
        ready = client.get("/ready")  # an optional model that failed to load is reported, not blocking
        assert ready.status_code == 200 and "int8.onnx not found" in ready.json()["errors"]["images_debiased"]

        def post(i: int) -> dict:
            r = client.post("/predict/both", files=files(*uploads[i % len(uploads)], ctype="image/jpeg"))
            assert r.status_code == 200, r.text
            return r.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(3 * len(uploads))))
        text = client.get("/metrics").text
    for i, body in enumerate(answers):  # each answer is the int8 model's own answer for that file
        img, _, _ = toy_test_files(toy_dataset)[i % len(uploads)]
        assert body["mask_source"] == "uploaded"
        expected = int8["images"].predict([load_rgb(img)])[0]
        assert body["image_model"]["predicted_class"] == expected.predicted_class
    for name in ("images", "cutouts"):
        assert _metric(text, "evbattery_batch_size_sum", name) == len(answers)  # every input in some batch
        assert _metric(text, "evbattery_batch_size_count", name) <= len(answers)

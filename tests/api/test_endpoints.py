"""Every endpoint against a real uvicorn server, and parity with offline evaluation."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
from helpers import files
from serving_models import toy_test_files

from evbattery.data.layout import DatasetLayout
from evbattery.evaluation.evaluate import evaluate_model
from evbattery.inference.predictor import Predictor
from evbattery.models.registry import discover_models


def _upload(image: Path, mask: Path | None = None) -> dict:
    return files(image.read_bytes(), mask.read_bytes() if mask else None, ctype="image/jpeg")


def test_health_ready_models_docs(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["models"] == ["images", "cutouts", "images_debiased"]
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == {"images", "cutouts", "images_debiased"}
    assert models["cutouts"]["input_type"] == "cutouts" and models["images"]["image_size"] == 64
    assert models["images_debiased"]["debias"]["method"] == "bg-swap"
    assert models["images"]["classes"] == ["cylindrical", "pouch", "prismatic"] and models["images"]["head"] == "avgpool"
    assert client.get("/docs").status_code == 200
    assert "/predict/{name}" in client.get("/openapi.json").json()["paths"]


def test_predict_endpoints_shapes(client: httpx.Client, toy_dataset: Path) -> None:
    img, mask, _ = toy_test_files(toy_dataset)[0]
    r = client.post("/predict/image", files=_upload(img))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"predicted_class", "confidence", "probabilities", "model_used", "latency_ms", "model_version"} <= set(body)
    assert body["model_used"] == "images" and body["mask_source"] is None
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["confidence"] == max(body["probabilities"].values())
    cut = client.post("/predict/cutout", files=_upload(img, mask)).json()
    assert cut["model_used"] == "cutouts" and cut["mask_source"] == "uploaded"
    both = client.post("/predict/both", files=_upload(img, mask)).json()
    assert both["image_model"]["model_used"] == "images" and both["cutout_model"]["model_used"] == "cutouts"
    assert both["agree"] == (both["image_model"]["predicted_class"] == both["cutout_model"]["predicted_class"])
    assert both["note"] == ("Models agree" if both["agree"] else "Models disagree – possible background bias")
    assert both["image_model"]["predicted_class"] == body["predicted_class"]
    assert set(both["model_versions"]) == {"images", "cutouts"}
    deb = client.post("/predict/debiased", files=_upload(img)).json()
    assert deb["model_used"] == "images_debiased"
    assert client.post("/predict/images_debiased", files=_upload(img)).json()["model_used"] == "images_debiased"
    al = client.post("/predict/all", files=_upload(img, mask)).json()
    assert list(al["results"]) == ["images", "cutouts", "images_debiased"]
    assert sum(len(v) for v in al["votes"].values()) == 3 and al["mask_source"] == "uploaded"
    assert client.post("/predict/nope", files=_upload(img)).status_code == 404


def test_explain_png_and_json(client: httpx.Client, toy_dataset: Path) -> None:
    img, mask, _ = toy_test_files(toy_dataset)[0]
    r = client.post("/explain/image", files=_upload(img))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    j = client.post("/explain/cutout", params={"format": "json"}, files=_upload(img, mask)).json()
    assert j["model_used"] == "cutouts" and j["mask_source"] == "uploaded"
    assert base64.b64decode(j["overlay_png_base64"])[:4] == b"\x89PNG"


def test_metrics_count_requests(client: httpx.Client, toy_dataset: Path) -> None:
    img, _, _ = toy_test_files(toy_dataset)[0]
    client.post("/predict/image", files=_upload(img))
    text = client.get("/metrics").text
    assert 'evbattery_requests_total{endpoint="/predict/image",method="POST",status="200"}' in text
    assert 'evbattery_inference_latency_seconds_count{endpoint="/predict/image",model="images"}' in text


def test_api_matches_offline_evaluation(client: httpx.Client, toy_dataset: Path, model_dir: Path) -> None:
    """The API's answers on the test split are evaluate_model's answers (same Predictor path)."""
    layout = DatasetLayout(toy_dataset)
    paths = discover_models(model_dir)
    offline = {n: evaluate_model(Predictor.from_checkpoint(paths[n]), layout) for n in ("images", "cutouts")}
    wrong: dict[str, set[str]] = {"images": set(), "cutouts": set()}
    samples = layout.samples("test")
    for s in samples:
        both = client.post("/predict/both", files=_upload(s.image, s.mask)).json()
        for n, key in (("images", "image_model"), ("cutouts", "cutout_model")):
            if both[key]["predicted_class"] != s.cls:
                wrong[n].add(s.stem)
    for n in ("images", "cutouts"):
        assert wrong[n] == {Path(m["file"]).stem for m in offline[n]["misclassified"]}
        assert abs((1 - len(wrong[n]) / len(samples)) - offline[n]["accuracy"]) < 1e-9

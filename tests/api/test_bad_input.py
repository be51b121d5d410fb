"""Bad uploads get a 4xx JSON {"detail": ...}, never a 5xx, and the server stays up; the API key."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import encode, files
from PIL import Image
from serving_models import toy_test_files

PNG = encode(np.full((32, 32, 3), 128, np.uint8))


def _cases(toy: Path) -> list[tuple[str, str, dict, int, str]]:
    img, _, _ = toy_test_files(toy)[0]
    good = img.read_bytes()
    big_noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    return [
        ("non-image bytes", "/predict/image", files(b"hello, not an image"), 400, "not a readable image"),
        ("truncated", "/predict/image", files(good[: len(good) // 2], ctype="image/jpeg"), 400, "readable"),
        ("zero bytes", "/predict/image", files(b""), 400, "0 bytes"),
        ("wrong content type", "/predict/image", files(good, ctype="text/plain"), 415, "content type"),
        ("too large upload", "/predict/both", files(encode(big_noise)), 413, "limit"),
        ("decompression bomb", "/predict/image", files(encode(np.zeros((600, 600), np.uint8))), 413, "pixels"),
        ("mask size differs", "/predict/cutout", files(good, encode(np.zeros((10, 12), np.uint8))), 422,
         "mask size 12x10 differs from image size 64x64"),
        ("mask not an image", "/predict/both", files(good, b"nope"), 400, "mask"),
        ("no mask, no segmenter", "/predict/cutout", files(good), 422, "mask"),
        ("missing file field", "/predict/image", {"other": ("x.png", PNG, "image/png")}, 422, ""),
        ("unknown model", "/predict/nope", files(good), 404, "not loaded"),
        ("unknown explain model", "/explain/nope", files(good), 404, "not loaded"),
        ("explain bad bytes", "/explain/image", files(b"\x00\x01"), 400, "readable"),
    ]


def test_bad_input_corpus(client: httpx.Client, toy_dataset: Path) -> None:
    statuses = []
    for name, url, upload, status, detail in _cases(toy_dataset):
        r = client.post(url, files=upload)
        statuses.append(r.status_code)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/json"), name
        assert detail in str(r.json()["detail"]), f"{name}: {r.json()}"
    assert not [s for s in statuses if s >= 500]
    # Not multipart at all, and a Content-Length over the limit without sending it all.
    assert client.post("/predict/image", content=b"raw", headers={"content-type": "image/png"}).status_code == 422
    r = client.post("/predict/image", content=b"x" * 400_000, headers={"content-type": "multipart/form-data; b=1"})
    assert r.status_code == 413
    # A chunked upload (no Content-Length) is cut off while it is read.
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + b"\0" * 600_000 + b"\r\n--XyZ--\r\n")
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    r = client.post("/predict/image", content=chunks, headers={"content-type": "multipart/form-data; boundary=XyZ"})
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200


def _modes() -> Iterator[tuple[str, bytes]]:
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    yield "grayscale", encode(rgb.convert("L"))
    yield "palette", encode(rgb.convert("P"))
    yield "cmyk", encode(rgb.convert("CMYK"), "JPEG")
    yield "16-bit", encode(Image.fromarray((np.arange(48 * 40).reshape(48, 40) * 30).astype(np.uint16)))
    yield "la", encode(rgb.convert("LA"))


@pytest.mark.parametrize("mode", ["grayscale", "palette", "cmyk", "16-bit", "la"])
def test_image_modes_are_handled(client: httpx.Client, mode: str) -> None:
    data = dict(_modes())[mode]
    r = client.post("/predict/image", files=files(data))
    assert r.status_code == 200, r.text


def test_rgba_alpha_is_a_cutout(client: httpx.Client, toy_dataset: Path) -> None:
    img, mask, _ = toy_test_files(toy_dataset)[0]
    rgba = Image.open(img).convert("RGB")
    rgba.putalpha(Image.open(mask).convert("L"))
    via_alpha = client.post("/predict/cutout", files=files(encode(rgba))).json()
    via_mask = client.post("/predict/cutout", files=files(img.read_bytes(), mask.read_bytes())).json()
    assert via_alpha["mask_source"] == "alpha" and via_mask["mask_source"] == "uploaded"
    assert via_alpha["probabilities"] == pytest.approx(via_mask["probabilities"], abs=1e-5)


def test_exif_rotation_is_applied(client: httpx.Client, toy_dataset: Path) -> None:
    img, _, _ = toy_test_files(toy_dataset)[0]
    upright = Image.open(img).convert("RGB")
    # Orientation 8: the viewer rotates the stored pixels 90 degrees counter-clockwise to show them upright.
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif)
    a = client.post("/predict/image", files=files(encode(upright))).json()
    b = client.post("/predict/image", files=files(buf.getvalue())).json()
    assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)


def test_api_key_required_when_set(model_dir: Path, toy_dataset: Path) -> None:
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings

    img, _, _ = toy_test_files(toy_dataset)[0]
    app = create_app(ApiSettings(model_dir=model_dir, api_key="s3cret", required_models="images"))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        up = files(img.read_bytes(), ctype="image/jpeg")
        assert c.post("/predict/image", files=up).status_code == 401
        r = c.post("/predict/image", files=up, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert c.post("/predict/image", files=up, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/models").status_code == 401
        assert c.get("/health").status_code == 200


def test_not_ready_without_models(tmp_path: Path) -> None:
    from server import running_server

    from evbattery.api.app import create_app
    from evbattery.api.config import ApiSettings

    with running_server(create_app(ApiSettings(model_dir=tmp_path))) as base, httpx.Client(base_url=base) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["missing"] == [
            "images", "cutouts", f"models: no best_model_<name>.pth checkpoints in {tmp_path}"]
        r = c.post("/predict/both", files=files(PNG))
        assert r.status_code == 503 and "images, cutouts" in r.json()["detail"]
        assert c.post("/predict/all", files=files(PNG)).status_code == 503
        assert c.get("/models").json() == {"models": [], "segmenter": False}

"""The API client turns every failure into one friendly sentence (no httpx exception escapes)."""

from __future__ import annotations

import httpx
import pytest

from evbattery.experiments.servers import free_port
from evbattery.ui.client import ApiClient, ApiError


def _client(handler) -> ApiClient:
    return ApiClient("http://api.test", transport=httpx.MockTransport(handler))


def test_connection_refused_says_how_to_start_the_api() -> None:
    port = free_port()
    with pytest.raises(ApiError) as e:
        ApiClient(f"http://127.0.0.1:{port}").health()
    assert "not reachable" in e.value.message and f"127.0.0.1:{port}" in e.value.message
    assert "evbattery demo" in e.value.message and "EVBATTERY_API_URL" in e.value.message


@pytest.mark.parametrize(("status", "body", "expect"), [
    (400, {"detail": "upload: not a readable image"}, "rejected the request (400): upload: not a readable image"),
    (413, {"detail": "file is 12.0 MB; the limit is 10 MB"}, "the limit is 10 MB"),
    (422, {"detail": [{"loc": ["body", "file"], "msg": "Field required"}]}, "body.file: Field required"),
    (503, {"detail": "missing model: cutouts (model/best_model_cutouts.pth)"}, "not ready: missing model: cutouts"),
    (401, {"detail": "missing or wrong X-API-Key"}, "EVBATTERY_API_KEY"),
    (500, "Internal Server Error", "internal error (500)"),
])
def test_error_status_becomes_message_with_detail(status: int, body: object, expect: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return (httpx.Response(status, json=body) if isinstance(body, dict)
                else httpx.Response(status, text=str(body)))

    with pytest.raises(ApiError) as e:
        _client(handler).predict_all(b"x", "a.png")
    assert expect in e.value.message
    assert e.value.status == status


def test_timeout_is_reported_as_busy() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ApiError, match="did not answer /models in time"):
        _client(handler).models()


def test_upload_sends_file_and_optional_mask_fields() -> None:
    seen: dict[str, bytes] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = request.content
        seen["url"] = str(request.url).encode()
        return httpx.Response(200, json={"ok": True})

    assert _client(handler).explain("cutouts", b"IMG", "cell.jpg", b"MASK") == {"ok": True}
    assert b"/explain/cutouts?format=json" in seen["url"]
    assert b'name="file"; filename="cell.jpg"' in seen["body"] and b'name="mask"' in seen["body"]

"""A small HTTP client for the API that turns every failure into one friendly sentence.

Pages never see an httpx exception or a stack trace: each call returns JSON or raises ApiError,
whose message says what happened and what to do.
"""

from __future__ import annotations

from typing import Any

import httpx
import streamlit as st

from evbattery.core.config import get_settings

# Connecting should be instant on loopback; a prediction on a cold CPU model can take seconds.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0


class ApiError(Exception):
    """A failed API call, with a message meant for the person looking at the page."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _detail(resp: httpx.Response) -> str:
    """The API's `detail` field (FastAPI errors), or the start of the body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}, ...]
        detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}"
                           if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


class ApiClient:
    """JSON calls to the evbattery API at base_url."""

    def __init__(self, base_url: str, read_timeout: float = READ_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": key} if (key := get_settings().api_key) else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT_S))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(f"The API at {self.base_url} is not reachable (connection refused). Start it with "
                           f"`evbattery demo` or `uvicorn evbattery.api.app:app`, or set EVBATTERY_API_URL "
                           f"to where it runs.") from None
        except httpx.TimeoutException:
            raise ApiError(f"The API at {self.base_url} did not answer {path} in time. It may be busy "
                           f"(training or another request on a small CPU); wait a moment and try again.") from None
        except httpx.HTTPError as e:
            raise ApiError(f"Could not talk to the API at {self.base_url} ({type(e).__name__}: {e}). "
                           f"Check EVBATTERY_API_URL.") from None
        if resp.status_code == 503:
            raise ApiError(f"The API is up but not ready: {_detail(resp)}. Train the missing model "
                           f"(`evbattery train ...` or `evbattery demo`) and restart the API.", 503)
        if resp.status_code in (401, 403):
            raise ApiError(f"The API refused the request ({resp.status_code}: {_detail(resp)}). "
                           f"Set EVBATTERY_API_KEY to the key the API expects.", resp.status_code)
        if 400 <= resp.status_code < 500:
            raise ApiError(f"The API rejected the request ({resp.status_code}): {_detail(resp)}. "
                           f"Check the uploaded file and try another.", resp.status_code)
        if resp.status_code >= 500:
            raise ApiError(f"The API failed with an internal error ({resp.status_code}): {_detail(resp)}. "
                           f"See the API's log for details.", resp.status_code)
        try:
            return resp.json()
        except ValueError:
            raise ApiError(f"The API answered {path} with something that is not JSON; is "
                           f"{self.base_url} really the evbattery API?") from None

    @staticmethod
    def _files(image: bytes, filename: str, mask: bytes | None) -> dict[str, tuple[str, bytes, str]]:
        files = {"file": (filename, image, "application/octet-stream")}
        if mask is not None:
            files["mask"] = ("mask.png", mask, "image/png")
        return files

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._call("GET", "/health")

    def ready(self) -> dict[str, Any]:
        """GET /ready (raises ApiError naming what is missing when not ready)."""
        return self._call("GET", "/ready")

    def models(self) -> dict[str, Any]:
        """GET /models: metadata per loaded model."""
        return self._call("GET", "/models")

    def predict_all(self, image: bytes, filename: str, mask: bytes | None = None) -> dict[str, Any]:
        """POST /predict/all: every loaded model plus the agreement summary."""
        return self._call("POST", "/predict/all", files=self._files(image, filename, mask))

    def predict(self, name: str, image: bytes, filename: str, mask: bytes | None = None) -> dict[str, Any]:
        """POST /predict/{name}: one model (image, cutout, both, debiased, ...)."""
        return self._call("POST", f"/predict/{name}", files=self._files(image, filename, mask))

    def explain(self, model: str, image: bytes, filename: str, mask: bytes | None = None) -> dict[str, Any]:
        """POST /explain/{model}?format=json: Grad-CAM overlay as base64 PNG."""
        return self._call("POST", f"/explain/{model}", params={"format": "json"},
                          files=self._files(image, filename, mask))


@st.cache_resource
def get_client(base_url: str) -> ApiClient:
    """One shared client per API URL (httpx.Client is thread-safe)."""
    return ApiClient(base_url)


def api_url() -> str:
    """The API URL chosen in the sidebar, else EVBATTERY_API_URL."""
    return st.session_state.get("api_url") or get_settings().api_url

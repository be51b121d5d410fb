"""Upload handling: size limits while reading (no unbounded buffering, nothing written to disk),
content-type checks, decoding via evbattery.core.imageio, and error -> HTTP status mapping."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.formparsers import MultiPartParser

from evbattery.core.imageio import ImageDecodeError, ImageTooLargeError, decode_image_with_alpha, decode_mask
from evbattery.inference.cutouts import MaskSizeError, NoSegmenterError
from evbattery.inference.service import UnknownModelError

# Multipart overhead allowed on top of the upload limit (boundaries, part headers, a mask field).
BODY_SLACK = 64 * 1024
ACCEPTED_TYPES = ("application/octet-stream", "")

ASGIApp = Callable[..., Awaitable[None]]


def keep_uploads_in_memory(max_bytes: int) -> None:
    """Starlette spools file parts to a temp file past 1 MB; raise that above the body cap so uploads
    never touch the disk (the body-limit middleware bounds the memory)."""
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_bytes + BODY_SLACK + 1)


class BodyLimitMiddleware:
    """ASGI middleware: 413 when Content-Length or the bytes actually received exceed the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes + BODY_SLACK

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_json(send, 413, f"upload of {int(length)} bytes exceeds the limit of "
                                               f"{self.max_bytes - BODY_SLACK} bytes")
        seen, exceeded = 0, False

        async def limited_receive() -> MutableMapping[str, Any]:
            nonlocal seen, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise HTTPException(413, "upload too large")  # stops reading; the reply is set below
            return msg

        async def checked_send(msg: MutableMapping[str, Any]) -> None:
            # The body parser turns any error while reading into a 400; report the real cause instead.
            if not exceeded:
                return await send(msg)
            if msg["type"] == "http.response.start":
                return await _send_json(send, 413, f"upload exceeds the limit of {self.max_bytes - BODY_SLACK} "
                                                   f"bytes")
            return None

        return await self.app(scope, limited_receive, checked_send)


async def _send_json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def read_upload(upload: UploadFile, field: str, max_bytes: int) -> bytes:
    """The bytes of an uploaded file part, after checking its content type and size."""
    ctype = (upload.content_type or "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype in ACCEPTED_TYPES):
        raise HTTPException(415, f"{field}: content type {ctype!r} is not an image (send image/* or "
                                 f"application/octet-stream)")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, f"{field}: upload exceeds the limit of {max_bytes} bytes")
    if not data:
        raise HTTPException(400, f"{field}: empty file (0 bytes)")
    return data


def decode_inputs(image_bytes: bytes, mask_bytes: bytes | None,
                  max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(RGB array, alpha mask or None, uploaded mask or None); raises HTTPException on bad input."""
    with http_errors():
        img, alpha = decode_image_with_alpha(image_bytes, max_pixels=max_pixels)
        mask = None
        if mask_bytes is not None:
            try:
                mask = decode_mask(mask_bytes, max_pixels=max_pixels)
            except ImageDecodeError as e:
                raise ImageDecodeError(str(e).replace("upload", "mask", 1)) from e
        return np.asarray(img), alpha, mask


class http_errors:
    """Map the domain errors of decoding and inference to HTTP errors with a clear detail."""

    STATUS = ((ImageTooLargeError, 413), (ImageDecodeError, 400), (MaskSizeError, 422),
              (NoSegmenterError, 422), (UnknownModelError, 404))

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, HTTPException):
            return False
        for cls, status in self.STATUS:
            if isinstance(exc, cls):
                raise HTTPException(status, str(exc)) from exc
        return False

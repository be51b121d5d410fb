"""POST /explain/{model}: Grad-CAM overlay as PNG, or base64 PNG in JSON with ?format=json."""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response
from PIL import Image

from evbattery.api.deps import ApiKey, ServiceDep, SettingsDep
from evbattery.api.routes.predict import ERRORS, resolve
from evbattery.api.schemas import ExplainResponse
from evbattery.api.uploads import decode_inputs, http_errors, read_upload

router = APIRouter(prefix="/explain", tags=["explain"], dependencies=[ApiKey], responses=ERRORS)


def png_bytes(arr: Any) -> bytes:
    """Encode an HxWx3 uint8 array as PNG in memory."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@router.post("/{model}", response_model=ExplainResponse,
             responses={200: {"content": {"image/png": {}, "application/json": {}},
                              "description": "PNG overlay, or JSON with format=json"}})
async def explain_model(model: str, request: Request, svc: ServiceDep, settings: SettingsDep,
                        file: Annotated[UploadFile, File(description="The photo")],
                        mask: Annotated[UploadFile | None, File(description="Optional mask")] = None,
                        format: Annotated[Literal["png", "json"], Query(description="png or json")] = "png",
                        ) -> Any:
    """Grad-CAM heatmap of a model (image, cutout, debiased, or any loaded name) over its input."""
    name = resolve(svc, model)
    data = await read_upload(file, "file", settings.max_upload_bytes)
    mask_data = await read_upload(mask, "mask", settings.max_upload_bytes) if mask is not None else None

    def work() -> dict[str, Any]:
        image, alpha, uploaded = decode_inputs(data, mask_data, settings.max_pixels)
        with http_errors():
            out = svc.explain(name, image, alpha, uploaded)
        out["png"] = png_bytes(out["overlay"])
        return out

    out = await anyio.to_thread.run_sync(work, limiter=request.app.state.limiter)
    p = out["prediction"]
    if format == "json":
        return ExplainResponse(model_used=name, predicted_class=p.predicted_class, confidence=p.confidence,
                               mask_source=out["mask_source"],
                               overlay_png_base64=base64.b64encode(out["png"]).decode())
    return Response(out["png"], media_type="image/png",
                    headers={"X-Predicted-Class": p.predicted_class, "X-Model-Used": name})

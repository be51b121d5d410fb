"""POST /predict/image, /predict/cutout, /predict/both, /predict/all and /predict/{name}."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, File, HTTPException, Request, UploadFile

from evbattery.api.deps import ApiKey, MetricsDep, ServiceDep, SettingsDep
from evbattery.api.schemas import AllResponse, BothResponse, ErrorDetail, PredictionPublic, PredictResponse
from evbattery.api.uploads import decode_inputs, http_errors, read_upload
from evbattery.inference.agreement import agreement
from evbattery.inference.predictor import Prediction
from evbattery.inference.service import ModelService

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorDetail, "description": desc} for code, desc in (
        (400, "Unreadable, truncated or empty image"), (401, "Missing or wrong X-API-Key"),
        (404, "Model not loaded"), (413, "Upload or image too large"), (415, "Not an image content type"),
        (422, "Bad form, mask size differs from the image, or no mask source"), (503, "Models not loaded"))}

router = APIRouter(prefix="/predict", tags=["predict"], dependencies=[ApiKey], responses=ERRORS)

FileField = Annotated[UploadFile, File(description="The photo (any common image format; RGBA = a cutout)")]
MaskField = Annotated[UploadFile | None, File(description="Optional mask, same size as the photo (255 = cell)")]


def public(svc: ModelService, name: str, p: Prediction) -> PredictionPublic:
    """The public form of one model's prediction."""
    pred = svc.predictors[name]
    return PredictionPublic(**p.as_dict(), model_version=pred.version, input_type=pred.input_type)


async def run_models(request: Request, svc: ModelService, settings: Any, metrics: Any, names: Sequence[str],
                     file: UploadFile, mask: UploadFile | None) -> dict[str, Any]:
    """Read the uploads and run the named models off the event loop (bounded concurrency)."""
    data = await read_upload(file, "file", settings.max_upload_bytes)
    mask_data = await read_upload(mask, "mask", settings.max_upload_bytes) if mask is not None else None

    # Decoding and preparing run in a worker thread (at most infer_concurrency at once); the model
    # calls go through the service's per-model batching threads (concurrent requests share batches).
    def work() -> dict[str, Any]:
        image, alpha, uploaded = decode_inputs(data, mask_data, settings.max_pixels)
        with http_errors():
            return svc.run(names, image, alpha, uploaded)

    out = await anyio.to_thread.run_sync(work, limiter=request.app.state.limiter)
    endpoint = request.scope["route"].path
    for n, ms in out["model_ms"].items():
        metrics.inference.labels(endpoint, n).observe(ms / 1000.0)
    return out


def resolve(svc: ModelService, name: str) -> str:
    """Loaded model name for a name or alias, else 404."""
    with http_errors():
        return svc.resolve(name)


def need(svc: ModelService, *names: str) -> None:
    """503 naming the models that are not loaded."""
    missing = [n for n in names if n not in svc.predictors]
    if missing:
        raise HTTPException(503, f"model(s) not loaded: {', '.join(missing)} (looked in {svc.model_dir})")


async def predict_one(request: Request, svc: ModelService, settings: Any, metrics: Any, name: str,
                      file: UploadFile, mask: UploadFile | None) -> PredictResponse:
    """One model's answer for one upload."""
    out = await run_models(request, svc, settings, metrics, [name], file, mask)
    p = public(svc, name, out["predictions"][name])
    return PredictResponse(**p.model_dump(), mask_source=out["mask_source"], latency_ms=out["latency_ms"])


@router.post("/image", response_model=PredictResponse)
async def predict_image(request: Request, svc: ServiceDep, settings: SettingsDep, metrics: MetricsDep,
                        file: FileField, mask: MaskField = None) -> PredictResponse:
    """Classify the full photo with the image model."""
    need(svc, "images")
    return await predict_one(request, svc, settings, metrics, "images", file, mask)


@router.post("/cutout", response_model=PredictResponse)
async def predict_cutout(request: Request, svc: ServiceDep, settings: SettingsDep, metrics: MetricsDep,
                         file: FileField, mask: MaskField = None) -> PredictResponse:
    """Classify the cutout (uploaded mask, else alpha channel, else segmenter) with the cutout model."""
    need(svc, "cutouts")
    return await predict_one(request, svc, settings, metrics, "cutouts", file, mask)


@router.post("/both", response_model=BothResponse)
async def predict_both(request: Request, svc: ServiceDep, settings: SettingsDep, metrics: MetricsDep,
                       file: FileField, mask: MaskField = None) -> BothResponse:
    """Image model and cutout model side by side, with whether they agree."""
    need(svc, "images", "cutouts")
    out = await run_models(request, svc, settings, metrics, ["images", "cutouts"], file, mask)
    preds = out["predictions"]
    summary = agreement(preds)
    return BothResponse(image_model=public(svc, "images", preds["images"]),
                        cutout_model=public(svc, "cutouts", preds["cutouts"]), note=summary["note"],
                        agree=summary["agree"], unsure=summary["unsure"], unfamiliar=summary["unfamiliar"],
                        mask_source=out["mask_source"], latency_ms=out["latency_ms"],
                        model_versions={n: svc.predictors[n].version for n in preds})


@router.post("/all", response_model=AllResponse)
async def predict_all(request: Request, svc: ServiceDep, settings: SettingsDep, metrics: MetricsDep,
                      file: FileField, mask: MaskField = None) -> AllResponse:
    """Every loaded model on the upload, with an agreement summary."""
    if not svc.predictors:
        raise HTTPException(503, f"no models loaded (looked in {svc.model_dir})")
    names = list(svc.predictors)
    out = await run_models(request, svc, settings, metrics, names, file, mask)
    preds = out["predictions"]
    return AllResponse(results={n: public(svc, n, p) for n, p in preds.items()}, **agreement(preds),
                       mask_source=out["mask_source"], latency_ms=out["latency_ms"],
                       model_versions={n: svc.predictors[n].version for n in preds})


@router.post("/{name}", response_model=PredictResponse)
async def predict_named(name: str, request: Request, svc: ServiceDep, settings: SettingsDep,
                        metrics: MetricsDep, file: FileField, mask: MaskField = None) -> PredictResponse:
    """Classify with any loaded model by name or alias (e.g. debiased = images_debiased)."""
    return await predict_one(request, svc, settings, metrics, resolve(svc, name), file, mask)

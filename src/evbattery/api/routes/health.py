"""GET /health (liveness), /ready (models loaded), /models (metadata), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from evbattery.api.deps import ApiKey, MetricsDep, SettingsDep
from evbattery.api.schemas import ErrorDetail, Health, ModelsResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def read_health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": Health, "description": "Not ready"}})
def read_ready(request: Request, settings: SettingsDep) -> Response:
    """Readiness: 200 once the required models are loaded, else 503 naming what is missing."""
    svc = getattr(request.app.state, "service", None)
    if svc is None:
        body = Health(status="loading", missing=settings.required)
        return JSONResponse(body.model_dump(), status_code=503)
    missing = svc.missing(settings.required)
    # a load error of a required model (or of the whole folder / the segmenter) blocks readiness;
    # one of an optional model is reported without blocking
    blocking = [f"{k}: {v}" for k, v in svc.errors.items() if k in settings.required or k in ("models", "segmenter")]
    not_ready = missing + blocking
    body = Health(status="not ready" if not_ready else "ready", models=list(svc.predictors), missing=not_ready,
                  segmenter=svc.segmenter is not None,
                  errors={k: v for k, v in svc.errors.items() if k not in settings.required})
    return JSONResponse(body.model_dump(), status_code=503 if not_ready else 200)


@router.get("/models", response_model=ModelsResponse, dependencies=[ApiKey],
            responses={401: {"model": ErrorDetail}, 503: {"model": ErrorDetail}})
def read_models(request: Request) -> ModelsResponse:
    """Metadata of every loaded model (classes, input size/type, data fingerprint, metrics, debias)."""
    svc = getattr(request.app.state, "service", None)
    if svc is None:
        return ModelsResponse(models=[], segmenter=False)
    return ModelsResponse(models=svc.describe(), segmenter=svc.segmenter is not None)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def read_metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: request counts and latency per endpoint, inference latency per model."""
    return metrics.render()

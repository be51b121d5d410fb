"""The evbattery HTTP API. Run: `python -m uvicorn evbattery.api.app:app` or `evbattery serve`.

Endpoints (multipart field `file`, optional `mask` of the same size; errors are JSON {"detail": ...}):
  POST /predict/image    image model on the photo         -> predicted_class, confidence, probabilities,
  POST /predict/cutout   cutout model on the cutout          model_used, model_version, input_type,
  POST /predict/{name}   any loaded model or alias            mask_source, latency_ms
                         (image, cutout, debiased = images_debiased, or the full name)
  POST /predict/both     -> image_model, cutout_model, note ("Models agree" / "Models disagree – possible
                            background bias"), agree, mask_source, latency_ms, model_versions
  POST /predict/all      every loaded model -> results {name: prediction}, agree, note, majority_class,
                            votes, mask_source, latency_ms, model_versions
  POST /explain/{model}  Grad-CAM overlay: PNG, or ?format=json -> overlay_png_base64, predicted_class, ...
  GET  /health  liveness | /ready  503 until the required models are loaded, naming what is missing
  GET  /models  metadata of every model | /metrics  Prometheus | /docs  OpenAPI UI
mask_source: "uploaded" (the `mask` field), "alpha" (an RGBA cutout), "segmenter" (model/segmenter.pth);
null when only photo models ran. Status codes: 400 unreadable/empty image, 401 X-API-Key (when
EVBATTERY_API_KEY is set), 404 unknown model, 413 upload > EVBATTERY_MAX_UPLOAD_MB or image >
EVBATTERY_MAX_PIXELS, 415 non-image content type, 422 bad form / mask size differs / no mask source,
503 models missing. Models load once at start-up from EVBATTERY_MODEL_DIR (default model/).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI

from evbattery import __version__
from evbattery.api.config import ApiSettings
from evbattery.api.metrics import Metrics
from evbattery.api.routes import explain, health, predict
from evbattery.api.uploads import BodyLimitMiddleware, keep_uploads_in_memory

log = logging.getLogger(__name__)


def load_service(settings: ApiSettings, metrics: Metrics | None = None) -> Any:  # a ModelService
    """Load every model of settings.model_dir once, behind per-model batching threads."""
    from evbattery.inference.batching import BatchRunner
    from evbattery.inference.service import ModelService

    onnx_dir = Path(settings.onnx_dir) if settings.onnx_dir else None
    threads = settings.model_threads
    batcher = BatchRunner(settings.max_batch, on_batch=metrics.observe_batch if metrics else None,
                          torch_threads=threads)
    svc = ModelService.load(settings.model_dir, backend=settings.api_backend, onnx_dir=onnx_dir, batcher=batcher,
                            onnx_threads=threads)
    log.info("loaded models %s from %s (backend %s, %d thread(s) per model, segmenter %s)%s", list(svc.predictors),
             settings.model_dir, settings.api_backend, threads, svc.segmenter is not None,
             f"; errors: {svc.errors}" if svc.errors else "")
    return svc


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API (models load in the lifespan, off the event loop)."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.limiter = anyio.CapacityLimiter(settings.infer_concurrency)
        svc = await anyio.to_thread.run_sync(load_service, settings, app.state.metrics)
        app.state.service = svc
        yield
        app.state.service = None
        await anyio.to_thread.run_sync(svc.close)

    app = FastAPI(title="evbattery", version=__version__, lifespan=lifespan,
                  description="Battery-cell form factor (cylindrical / pouch / prismatic) from a photo, "
                              "with an image model, a cutout model and background-bias checks.")
    app.state.settings, app.state.metrics, app.state.service = settings, Metrics(), None
    keep_uploads_in_memory(settings.max_upload_bytes)
    app.middleware("http")(app.state.metrics.middleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    for module in (health, predict, explain):
        app.include_router(module.router)
    return app


app = create_app()

"""FastAPI dependencies as Annotated aliases: the loaded service, settings, the API key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from evbattery.api.config import ApiSettings
from evbattery.api.metrics import Metrics
from evbattery.inference.service import ModelService

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required only when the server sets EVBATTERY_API_KEY")


def get_service(request: Request) -> ModelService:
    """The ModelService loaded at start-up (503 while it is not there)."""
    svc = getattr(request.app.state, "service", None)
    if svc is None:
        raise HTTPException(503, "models are still loading")
    return svc


def get_settings(request: Request) -> ApiSettings:
    """The settings the app was built with."""
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


def check_api_key(request: Request, key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    """401 unless X-API-Key matches EVBATTERY_API_KEY (no check when it is unset)."""
    expected = request.app.state.settings.api_key
    if expected and not (key and secrets.compare_digest(key.encode(), expected.encode())):
        raise HTTPException(401, "missing or wrong X-API-Key")


ServiceDep = Annotated[ModelService, Depends(get_service)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ApiKey = Depends(check_api_key)

"""Response models (seed field names kept: predicted_class, confidence, probabilities, model_used)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictionPublic(BaseModel):
    """One model's prediction."""

    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_used: str
    model_version: str
    input_type: str
    novelty: float | None = Field(None, description="distance of the photo's features from the model's training "
                                  "photos; 1.0 = the 99th percentile of its held-out val photos; null: the model "
                                  "has no novelty score")
    familiar: bool | None = Field(None, description="false when novelty > 1: the photo is unlike the training photos")


class PredictResponse(PredictionPublic):
    """POST /predict/image, /predict/cutout, /predict/{name}."""

    mask_source: str | None = Field(None, description="uploaded | alpha | segmenter; null for photo models")
    latency_ms: float


class BothResponse(BaseModel):
    """POST /predict/both: the image model and the cutout model side by side."""

    image_model: PredictionPublic
    cutout_model: PredictionPublic
    note: str
    agree: bool
    unsure: list[str] = Field(default_factory=list, description="models whose top probability is near chance")
    unfamiliar: list[str] = Field(default_factory=list, description="models to which the photo is unlike their "
                                  "training photos (novelty > 1)")
    mask_source: str | None
    latency_ms: float
    model_versions: dict[str, str]


class AllResponse(BaseModel):
    """POST /predict/all: every loaded model with an agreement summary."""

    results: dict[str, PredictionPublic]
    agree: bool
    unsure: list[str] = Field(default_factory=list, description="models whose top probability is near chance")
    unfamiliar: list[str] = Field(default_factory=list, description="models to which the photo is unlike their "
                                  "training photos (novelty > 1)")
    note: str
    majority_class: str | None
    votes: dict[str, list[str]]
    mask_source: str | None
    latency_ms: float
    model_versions: dict[str, str]


class ExplainResponse(BaseModel):
    """POST /explain/{model}?format=json."""

    model_used: str
    predicted_class: str
    confidence: float
    mask_source: str | None
    overlay_png_base64: str


class ModelInfo(BaseModel):
    """Metadata of one loaded model."""

    name: str
    version: str
    backend: str
    precision: str = "fp32"
    input_type: str
    classes: list[str]
    image_size: int
    arch: str
    head: str = "avgpool"  # how layer4 is pooled: avgpool | mask_attention
    dataset_fingerprint: str | None = None
    metrics: dict[str, Any] = {}
    best_epoch: int | None = None
    pretrained: str | None = None
    debias: dict[str, Any] | None = None
    novelty: dict[str, Any] | None = Field(None, description="the novelty score: what it was fitted on (n_train, "
                                           "n_val, components, quantile), or why none was ('skipped')")
    created: str | None = None
    source: str


class ModelsResponse(BaseModel):
    """GET /models."""

    models: list[ModelInfo]
    segmenter: bool


class Health(BaseModel):
    """GET /health and /ready."""

    status: str
    models: list[str] = []
    missing: list[str] = []
    segmenter: bool = False
    errors: dict[str, str] = {}  # load errors (a model that is present but could not be loaded)


class ErrorDetail(BaseModel):
    """Every error: {"detail": ...}."""

    detail: Any

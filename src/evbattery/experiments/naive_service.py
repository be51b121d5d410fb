"""The naive baseline service for `evbattery bench api` (the seed's design, kept on purpose).

An async handler runs fp32 torch directly on the event loop, building the preprocessing per request;
the models are loaded once. Do not use it to serve; it exists to measure the real service against.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from torchvision import transforms

from evbattery.core.imageio import decode_mask
from evbattery.data.cutouts import make_cutout
from evbattery.models.classifier import load_classifier
from evbattery.models.registry import model_path

MODEL_DIR = Path(os.environ.get("EVBATTERY_MODEL_DIR", "model"))
MODELS = {name: load_classifier(model_path(MODEL_DIR, name)) for name in ("images", "cutouts")}

app = FastAPI(title="evbattery naive baseline")


def _classify(name: str, image: Image.Image) -> dict:
    model, meta = MODELS[name]
    tf = transforms.Compose([transforms.Resize((meta["image_size"], meta["image_size"])), transforms.ToTensor(),
                             transforms.Normalize(meta["mean"], meta["std"])])
    with torch.no_grad():
        probs = torch.softmax(model(tf(image).unsqueeze(0)), dim=1)[0]
    k = int(probs.argmax())
    return {"predicted_class": meta["classes"][k], "confidence": float(probs[k]),
            "probabilities": {c: float(p) for c, p in zip(meta["classes"], probs, strict=True)}, "model_used": name}


@app.post("/predict/both")
async def predict_both(file: UploadFile = File(...), mask: UploadFile = File(...)) -> dict:
    """Both models, synchronously on the event loop."""
    image = Image.open(io.BytesIO(await file.read())).convert("RGB")
    m = decode_mask(await mask.read())
    cutout = Image.fromarray(make_cutout(np.asarray(image), m))
    a, b = _classify("images", image), _classify("cutouts", cutout)
    agree = a["predicted_class"] == b["predicted_class"]
    return {"image_model": a, "cutout_model": b,
            "note": "Models agree" if agree else "Models disagree – possible background bias"}

"""Models page: what the API has loaded (classes, input, training data, metrics, pretrained or not)."""

from __future__ import annotations

import streamlit as st

from evbattery.ui.client import ApiError, api_url, get_client
from evbattery.ui.results import model_title

# The metadata worth a glance; the rest stays in the expander's JSON.
SUMMARY_KEYS = ("input_type", "classes", "image_size", "arch", "head", "pretrained", "best_epoch", "debias", "backend",
                "version", "created", "dataset_fingerprint", "source")

st.title("Loaded models")
client = get_client(api_url())
try:
    models = client.models()
except ApiError as e:
    st.error(e.message, icon=":material/error:")
    st.stop()

try:
    client.ready()
    st.success(f"API at {client.base_url} is ready.", icon=":material/check_circle:")
except ApiError as e:
    st.warning(e.message)

# /models answers {"models": [meta, ...], "segmenter": bool}.
block = models.get("models", models) if isinstance(models, dict) else models
if isinstance(block, list):
    block = {str(m.get("name", i)): m for i, m in enumerate(block)}
if isinstance(models, dict) and "segmenter" in models:
    st.caption("Segmenter loaded: photos without a mask get one predicted." if models["segmenter"] else
               "No segmenter loaded: the cutout model needs an uploaded mask or an alpha channel.")
if not block:
    st.info("The API has no model loaded. Train one with `evbattery train` (or run `evbattery demo`).")
for name, meta in block.items():
    meta = meta if isinstance(meta, dict) else {"value": meta}
    st.subheader(f"{model_title(name)} (`{name}`)")
    summary = {k: meta[k] for k in SUMMARY_KEYS if k in meta}
    if isinstance(summary.get("classes"), list):
        summary["classes"] = ", ".join(map(str, summary["classes"]))
    st.table({k: [str(v)] for k, v in summary.items()})
    metrics = meta.get("metrics")
    if isinstance(metrics, dict) and metrics:
        cols = st.columns(min(len(metrics), 4))
        for col, (k, v) in zip(cols, list(metrics.items())[:4], strict=False):
            col.metric(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    with st.expander("All metadata"):
        st.json(meta, expanded=False)

"""Models page: what the API has loaded (classes, input, training data, metrics, pretrained or not)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from evbattery.core.config import get_settings
from evbattery.ui.client import ApiError, api_url, get_client
from evbattery.ui.results import model_title, photo_eval_rows, read_photo_reports

# The metadata worth a glance; the rest stays in the expander's JSON.
SUMMARY_KEYS = ("input_type", "classes", "image_size", "arch", "head", "pretrained", "best_epoch", "debias", "novelty",
                "backend", "version", "created", "dataset_fingerprint", "source")

def show_loaded_models() -> None:
    """What the API has loaded (an error line when it is down: the report sections below still show)."""
    client = get_client(api_url())
    try:
        models = client.models()
    except ApiError as e:
        st.error(e.message, icon=":material/error:")
        return

    try:
        client.ready()
        st.success(f"API at {client.base_url} is ready.", icon=":material/check_circle:")
    except ApiError as e:
        st.warning(e.message)

    # /models answers {"models": [meta, ...], "segmenter": bool}.
    block = {m["name"]: m for m in models["models"]}
    st.caption("Segmenter loaded: photos without a mask get one predicted." if models["segmenter"] else
               "No segmenter loaded: the cutout model needs an uploaded mask or an alpha channel.")
    if not block:
        st.info("The API has no model loaded. Train one with `evbattery train` (or run `evbattery demo`).")
    for name, meta in block.items():
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


st.title("Loaded models")
show_loaded_models()

# Real photos: `evbattery evaluate --data <folder of class subfolders>` writes reports/eval_photos_<folder>.json.
st.header("On real photos")
photo_reports = read_photo_reports(Path(get_settings().reports_dir))
if not photo_reports:
    st.info("No real-photo evaluation yet. Rebuild the benchmark with `evbattery data real-photos --sources "
            "<clones>` and run `evbattery evaluate --data data/real_photos --split test`.")
for path, report in photo_reports:
    st.subheader(f"{report['n']} photos in `{report['folder']}`")
    st.caption(", ".join(f"{c}: {n}" for c, n in report["counts"].items()) + " · chance = 33 % balanced accuracy. "
               "Models trained only on synthetic photos; the cutout models see the segmenter's masks.")
    st.dataframe(photo_eval_rows(report), hide_index=True, use_container_width=True)
    png = path.with_suffix(".png")
    if png.is_file():
        st.image(str(png), caption="Confusion matrices (rows: true class)")
    for note in report.get("notes", []):
        st.caption(note)
    with st.expander("Every photo's answers"):
        st.dataframe([{"file": Path(p["file"]).name, "class": p["class"],
                       **{m: f"{p[m]['predicted_class']} {p[m]['confidence']:.0%}" for m in report["models"]}}
                      for p in report["photos"]], hide_index=True, use_container_width=True)

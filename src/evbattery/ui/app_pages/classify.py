"""Classify page: one photo through every loaded model, side by side, with Grad-CAM and a bias verdict."""

from __future__ import annotations

import hashlib

import streamlit as st

from evbattery.core.config import get_settings
from evbattery.data.layout import DatasetError, DatasetLayout
from evbattery.ui.client import ApiError, api_url, get_client
from evbattery.ui.results import (
    MASK_SOURCES,
    decode_b64_png,
    local_cutout,
    model_predictions,
    model_title,
    png_bytes,
    sorted_probabilities,
    verdict,
)

UPLOAD, SAMPLE = "Upload a photo", "Sample from the test split"


@st.cache_data(show_spinner=False)
def test_samples(data_dir: str) -> dict[str, tuple[str, str]]:
    """{'<class>/<stem>': (image path, mask path)} of the test split ({} when there is none)."""
    try:
        return {f"{s.cls}/{s.stem}": (str(s.image), str(s.mask)) for s in DatasetLayout(data_dir).samples("test")}
    except (DatasetError, OSError):
        return {}


def pick_input() -> tuple[bytes | None, str, bytes | None]:
    """(image bytes, file name, mask bytes or None) from the upload widgets or a test sample."""
    source = st.radio("Image", [UPLOAD, SAMPLE], horizontal=True, label_visibility="collapsed")
    if source == UPLOAD:
        left, right = st.columns(2)
        photo = left.file_uploader("Photo of one cell (JPG or PNG)", type=["jpg", "jpeg", "png"])
        mask = right.file_uploader("Mask (optional; PNG, white = cell). Without one the API uses the "
                                   "image's alpha channel or its segmenter.", type=["png"])
        return (photo.getvalue() if photo else None, photo.name if photo else "", mask.getvalue() if mask else None)
    data_dir = str(get_settings().data_dir)
    samples = test_samples(data_dir)
    if not samples:
        st.info(f"No test split found under `{data_dir}`. Generate data with `evbattery data synth` "
                f"(or run `evbattery demo`), or upload a photo instead.")
        return None, "", None
    key = st.selectbox(f"Test image ({len(samples)} in `{data_dir}`)", list(samples))
    send_mask = st.checkbox("Send the dataset's mask (untick to let the API's segmenter find the cell)", value=True)
    image_path, mask_path = samples[key]
    with open(image_path, "rb") as f:
        image = f.read()
    mask = None
    if send_mask:
        with open(mask_path, "rb") as f:
            mask = f.read()
    return image, image_path.rsplit("/", 1)[-1], mask


def cached_call(tag: str, image: bytes, mask: bytes | None, call):
    """Run an API call once per (tag, image, mask, API URL) and keep the answer in the session."""
    h = hashlib.sha1(image + b"|" + (mask or b"") + api_url().encode() + tag.encode()).hexdigest()
    store = st.session_state.setdefault("_api_answers", {})
    if h not in store:
        store[h] = call()
    return store[h]


def show_inputs(resp: dict, image: bytes, mask: bytes | None) -> None:
    """The original photo and the cutout the cutout model actually saw, with where its mask came from."""
    mask_source = resp.get("mask_source")
    arr, local_source = local_cutout(image, mask)  # the API returns no cutout; build the same one here
    cutout = png_bytes(arr) if arr is not None else None
    mask_source = mask_source or local_source
    left, right = st.columns(2)
    left.image(image, caption="Original", width=320)
    where = MASK_SOURCES.get(mask_source or "", mask_source or "unknown")
    if cutout is not None:
        right.image(cutout, caption=f"Cutout used (mask from {where})", width=320)
    else:
        right.info(f"The cutout was built from a mask predicted by {where}; the cutout model's Grad-CAM "
                   f"below is drawn on it.")


def show_model(col, name: str, pred: dict, image: bytes, filename: str, mask: bytes | None,
               with_cam: bool) -> None:
    """One model's column: class, confidence, probability bars, Grad-CAM."""
    client = get_client(api_url())
    col.subheader(model_title(name))
    col.markdown(f"### {pred['predicted_class']}")
    novelty = pred.get("novelty")
    seen = "" if novelty is None else (f" · novelty {novelty:.1f}" + (" (unlike its training photos)"
                                                                      if novelty > 1 else ""))
    col.caption(f"confidence {pred['confidence']:.1%}{seen} · model `{pred.get('model_used', name)}`")
    for cls, p in sorted_probabilities(pred):
        col.progress(min(max(p, 0.0), 1.0), text=f"{cls}: {p:.1%}")
    if with_cam:
        try:
            cam = cached_call(f"explain/{name}", image, mask, lambda: client.explain(name, image, filename, mask))
        except ApiError as e:
            col.warning(f"Grad-CAM unavailable: {e.message}")
            return
        if cam.get("overlay_png_base64"):
            col.image(decode_b64_png(cam["overlay_png_base64"]), caption="Grad-CAM: red = where the model looked", width="stretch")


st.title("Classify a battery cell")
st.caption("Every loaded model classifies the same photo: the full-image model, the cutout model (background "
           "removed) and any others the API has. When they disagree, the background may be steering the answer.")
image, filename, mask = pick_input()
with_cam = st.toggle("Grad-CAM overlays", value=True)
if image is None:
    st.stop()

try:
    with st.spinner("Asking the API..."):
        resp = cached_call("predict/all", image, mask,
                           lambda: get_client(api_url()).predict_all(image, filename or "upload.png", mask))
except ApiError as e:
    st.error(e.message, icon=":material/error:")
    st.stop()

preds = model_predictions(resp)
show_inputs(resp, image, mask)
level, text = verdict(resp)
if level == "agree":
    st.success(text, icon=":material/check_circle:")
elif level == "unsure":
    st.info(text, icon=":material/help:")
elif level == "unfamiliar":
    st.warning(text, icon=":material/travel_explore:")
else:
    st.warning(text, icon=":material/warning:")
if resp.get("latency_ms") is not None:
    st.caption(f"API latency {float(resp['latency_ms']):.0f} ms")
for col, (name, pred) in zip(st.columns(max(len(preds), 1)), preds.items(), strict=False):
    show_model(col, name, pred, image, filename or "upload.png", mask, with_cam)

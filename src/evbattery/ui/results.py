"""Pure helpers behind the Classify page: read API answers generically and word the verdict."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

from evbattery.core.imageio import decode_image, decode_image_with_alpha, decode_mask
from evbattery.data.cutouts import make_cutout

# Friendly column titles for the models we know; any other model shows under its own name.
MODEL_TITLES = {
    "images": "Full image",
    "cutouts": "Cutout (background removed)",
    "images_debiased": "Full image, debiased",
}
MASK_SOURCES = {
    "uploaded": "the mask you uploaded",
    "alpha": "the image's alpha channel",
    "segmenter": "the segmenter model (predicted)",
    "dataset": "the dataset's mask",
}


def model_title(name: str) -> str:
    """Column title of a model."""
    return MODEL_TITLES.get(name, name.replace("_", " ").capitalize())


def model_predictions(resp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{model name: prediction} from a /predict/all answer (its `results`), in the API's order."""
    return dict(resp.get("results") or {})


def verdict(resp: dict[str, Any]) -> tuple[str, str]:
    """(level, markdown sentence) for the banner above the columns, from the API's own agree / unsure /
    unfamiliar.

    level: "agree" | "disagree" | "unsure" | "unfamiliar" | "none". Neither an unsure model's answer nor answers
    for a photo unlike the models' training photos are reported as agreement.
    """
    preds = model_predictions(resp)
    if not preds:
        return "none", "No model answered."
    unsure = [n for n in resp.get("unsure") or [] if n in preds]
    if unsure:
        who = ", ".join(f"{model_title(n)} ({preds[n]['confidence']:.0%} {preds[n]['predicted_class']})"
                        for n in unsure)
        return "unsure", (f"**Unsure:** {who} is close to chance, so this answer is a guess, not a judgement of "
                          f"the cell or its background. The photo may be unlike the photos the models were "
                          f"trained on; try a closer, evenly lit shot of one cell.")
    unfamiliar = [n for n in resp.get("unfamiliar") or [] if n in preds]
    if unfamiliar:
        who = ", ".join(f"{model_title(n)} (novelty {float(preds[n].get('novelty') or 0):.1f})" for n in unfamiliar)
        said = (f"they agree on **{next(iter(preds.values()))['predicted_class']}**" if resp.get("agree")
                else "they disagree")
        return "unfamiliar", (f"**Unfamiliar photo:** it is unlike the photos the models learned from: {who}; above "
                              f"1 is further than 99 % of held-out photos like their training ones. The answers "
                              f"may be confident and still wrong here, so {said}, but that says little about "
                              f"the cell or its background. Check the cell by eye.")
    if resp.get("agree"):
        cls = next(iter(preds.values()))["predicted_class"]
        return "agree", (f"**The models agree: {cls}.** The model that sees only the cell and the model(s) "
                         f"that see the whole photo give the same answer, so the background is unlikely to be "
                         f"driving this prediction.")
    votes = ", ".join(f"{model_title(n)} → **{p['predicted_class']}**" for n, p in preds.items())
    msg = (f"**The models disagree:** {votes}. The cutout model sees only the cell; when a full-image model "
           f"answers differently it may be reading the background instead of the cell (background bias). "
           f"Compare the Grad-CAM overlays below: heat outside the cell is a sign of that shortcut.")
    if resp.get("mask_source") == "segmenter":
        msg += " The mask was predicted by the segmenter, so first check that the cutout shows the whole cell."
    return "disagree", msg


def sorted_probabilities(pred: dict[str, Any]) -> list[tuple[str, float]]:
    """(class, probability) pairs, most likely first."""
    return sorted(((c, float(p)) for c, p in pred["probabilities"].items()), key=lambda cp: -cp[1])


def local_cutout(image: bytes, mask: bytes | None) -> tuple[np.ndarray | None, str | None]:
    """The cutout the API builds when the mask is known here (uploaded or alpha), and its source.

    Returns (None, None) when the API will have to predict the mask itself (segmenter).
    """
    if mask is not None:
        return make_cutout(np.asarray(decode_image(image)), decode_mask(mask)), "uploaded"
    rgb, alpha = decode_image_with_alpha(image)
    if alpha is not None:
        return make_cutout(np.asarray(rgb), alpha), "alpha"
    return None, None


def decode_b64_png(data: str) -> bytes:
    """Bytes of a base64 PNG (the API's overlay_png_base64)."""
    return base64.b64decode(data)


def png_bytes(arr: np.ndarray) -> bytes:
    """Encode an array as PNG bytes (for st.image and downloads)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def read_photo_reports(reports: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(path, report) of every reports/eval_photos_*.json that parses, newest first."""
    import json

    out = []
    for p in sorted(reports.glob("eval_photos_*.json"), key=lambda q: q.stat().st_mtime, reverse=True):
        try:
            out.append((p, json.loads(p.read_text())))
        except (OSError, ValueError):
            continue
    return out


def photo_eval_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per model: balanced accuracy with its 95 % interval, the recall of each class and, in reports
    that have them, the calibration error, the wrong answers flagged unsure and the share of photos unlike the
    model's training photos."""
    rows = []
    for name, r in report["models"].items():
        lo, hi = r["balanced_accuracy_ci"]
        rows.append({"model": model_title(name), "backbone": r.get("arch", "resnet18"), "input": r["input"],
                     "balanced accuracy": f"{r['balanced_accuracy']:.1%}", "95 % CI": f"{lo:.0%}–{hi:.0%}",
                     **{f"recall {c}": f"{v['recall']:.0%} (n={v['n']})" for c, v in r["recall"].items()},
                     **({"calibration error": f"{r['ece']:.2f}",
                         "wrong answers flagged unsure": f"{r['wrong_answers']['unsure']} of {r['wrong_answers']['n']}"}
                        if "ece" in r else {}),
                     **({"photos unlike its training photos": f"{r['unfamiliar']:.0%}"} if "unfamiliar" in r else {})})
    return rows

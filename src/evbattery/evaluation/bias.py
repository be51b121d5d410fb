"""The background-bias suite: Backgrounds-Challenge variants of a split, every model on every variant.

Xiao et al. 2020 ("Noise or Signal"): Original, Only-FG, No-FG, Only-BG-T, Mixed-Same / Mixed-Rand /
Mixed-Next; Sagawa et al. 2020: worst-group accuracy over (class x background family). Models are
found generically (every best_model_<name>.pth); a photo model sees the variant photo, a cutout
model (meta input_type == "cutouts") sees the variant's cutout made with the true mask and, when
model/segmenter.pth exists, with the segmenter's predicted mask.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from evbattery.core.imageio import load_mask, load_rgb
from evbattery.core.metrics import mask_iou
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetLayout, Sample
from evbattery.data.variants import MIXED_VARIANTS, SINGLE_VARIANTS, VARIANT_NAMES, mixed, resize_to
from evbattery.evaluation.bias_metrics import (
    accuracy,
    bg_gap,
    group_accuracy,
    home_gap_null,
    home_vs_other,
    pairwise_agreement,
    share_histogram,
    worst_group,
    worst_group_noise,
)
from evbattery.inference.gradcam import energy_inside, gradcam_maps, overlay
from evbattery.inference.predictor import Predictor
from evbattery.inference.segmenter import load_segmenter
from evbattery.models.registry import discover_models, segmenter_path

__all__ = ["background_owners", "bg_gap", "build_variant", "choose_partners", "group_accuracy", "run_bias_suite", "worst_group"]

# Card keys that may hold an image's background family (the toy data and the generator write "background").
SOURCES = {"photo": "the variant photo", "true": "cutout with the true mask",
           "pred": "cutout with the segmenter's mask"}


@dataclass
class SplitData:
    """A split loaded into memory: photos, masks, class indices, background families."""

    samples: list[Sample]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    labels: np.ndarray
    families: list[str | None]
    classes: tuple[str, ...]
    bg_owners: np.ndarray | None = None  # class whose home family each background is (biased synthetic data)
    home_families: dict[str, list[str]] | None = None  # the card's class -> home families, when recorded

    @property
    def groups(self) -> list[str] | None:
        """'<class>/<family>' per image, or None when any family is unknown."""
        if any(f is None for f in self.families):
            return None
        return [f"{self.classes[y]}/{f}" for y, f in zip(self.labels, self.families, strict=True)]


def family_of(meta: dict[str, Any]) -> str | None:
    """The background family recorded for an image in the card, if any."""
    family = meta.get("background")  # written by the synthetic generator (data/synth/generate.py)
    return family if isinstance(family, str) and family else None


def load_split(layout: DatasetLayout, split: str, limit: int | None = None, seed: int = 0,
               progress: bool = True) -> SplitData:
    """Read a split's photos and masks (a seeded subset of `limit` images when given)."""
    samples = layout.require_split(split)
    if limit is not None and limit < len(samples):
        keep = np.sort(np.random.default_rng(seed).choice(len(samples), size=limit, replace=False))
        samples = [samples[i] for i in keep]
    card = layout.read_card()
    card_images = card.get("images", {})
    images, masks = [], []
    for s in tqdm(samples, desc=f"load {split}", unit="img", disable=not progress):
        images.append(load_rgb(s.image))
        masks.append(resize_to(load_mask(s.mask), images[-1].shape[:2], is_mask=True))
    labels = np.array([layout.classes.index(s.cls) for s in samples])
    families = [family_of(card_images.get(s.key, {})) for s in samples]
    classes = tuple(layout.classes)
    homes = card.get("home_families") or {}
    owners = background_owners(families, homes, classes)
    return SplitData(samples, images, masks, labels, families, classes, owners, homes or None)


def choose_partners(labels: np.ndarray, n_classes: int, seed: int = 0,
                    bg_classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Seeded background partner of every image for each Mixed variant.

    bg_classes[j] is the class whose background photo j shows: -1 for a background no class owns. By
    default it is the photo's own class (Xiao et al.: on natural data a same-class photo carries that
    class's kind of background). On a balanced test split of biased synthetic data the photo's class
    says nothing about its background, so the suite passes the class whose *home family* the photo's
    background is (from the dataset card) instead; otherwise Mixed-Same would be Mixed-Rand in disguise
    and the BG-Gap of a shortcut model would read 0.

    mixed_same: a background of the image's own class; mixed_rand: any other image (uniform);
    mixed_next: a background of the next class index (the next class that owns one, cyclically).
    An image without a possible partner gets itself.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    owner = labels if bg_classes is None else np.asarray(bg_classes)
    idx = np.arange(len(labels))
    present = sorted(set(owner.tolist()) - {-1})
    out: dict[str, list[int]] = {v: [] for v in MIXED_VARIANTS}
    for i, y in enumerate(labels):
        pools = {"mixed_same": idx[(owner == y) & (idx != i)], "mixed_rand": idx[idx != i]}
        nxt = next((c for k in range(1, n_classes + 1) if (c := (y + k) % n_classes) in present and c != y), None)
        pools["mixed_next"] = idx[(owner == nxt) & (idx != i)] if nxt is not None else idx[:0]
        for v in MIXED_VARIANTS:
            out[v].append(int(rng.choice(pools[v])) if len(pools[v]) else i)
    return {v: np.array(p, dtype=int) for v, p in out.items()}


def background_owners(families: list[str | None], home_families: dict[str, list[str]],
                      classes: tuple[str, ...]) -> np.ndarray | None:
    """Per image, the index of the class whose home families hold its background (-1 if none); None when
    the card records no home families or some image's family is unknown."""
    if not home_families or any(f is None for f in families):
        return None
    owner_of = {fam: classes.index(c) for c, fams in home_families.items() if c in classes for fam in fams}
    return np.array([owner_of.get(f, -1) for f in families], dtype=int)


def build_variant(name: str, images: list[np.ndarray], masks: list[np.ndarray],
                  partners: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every image's `name` variant (the Mixed ones use partners[name] as background donors)."""
    if name in SINGLE_VARIANTS:
        fn = SINGLE_VARIANTS[name]
        return [fn(im, m) for im, m in zip(images, masks, strict=True)]
    if name in MIXED_VARIANTS:
        return [mixed(im, m, images[j], masks[j])
                for im, m, j in zip(images, masks, partners[name], strict=True)]
    raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANT_NAMES)}")


@dataclass
class Evaluation:
    """One (model, input source) pair the suite scores; label e.g. 'images' or 'cutouts[pred]'."""

    label: str
    model: str
    predictor: Predictor
    source: str
    preds: dict[str, np.ndarray] = field(default_factory=dict)
    shares: list[float] = field(default_factory=list)  # Grad-CAM energy inside the mask, on Original
    example_inputs: list[tuple[int, str, np.ndarray]] = field(default_factory=list)  # (example, variant, input)
    seen: dict[bytes, int] = field(default_factory=dict)  # predictions by input content (predict_indices)


def plan_evaluations(model_dir: Path, with_segmenter: bool,
                     device: str | torch.device | None = None) -> list[Evaluation]:
    """An Evaluation per photo model, and per mask source for every cutout model (Predictors on `device`)."""
    evals = []
    for name, path in discover_models(model_dir).items():
        pred = Predictor.from_checkpoint(path, device=device)
        if pred.input_type == "cutouts":
            evals.append(Evaluation(f"{name}[true]", name, pred, "true"))
            if with_segmenter:
                evals.append(Evaluation(f"{name}[pred]", name, pred, "pred"))
        else:
            evals.append(Evaluation(name, name, pred, "photo"))
    return evals


def segmenter_or_note(model_dir: Path, device: str | torch.device | None = None) -> tuple[Any, str | None]:
    """(Segmenter or None, note explaining why there is none)."""
    path = segmenter_path(model_dir)
    seg = load_segmenter(path, device)
    return seg, None if seg else f"no segmenter at {path}: cutout models scored with true masks only"


def predict_indices(predictor: Predictor, images: list[np.ndarray], classes: tuple[str, ...],
                    batch_size: int | None = None, seen: dict[bytes, int] | None = None) -> np.ndarray:
    """Predicted class of every image as an index into `classes` (mapped by name from the model's order).

    seen: answers by image content, kept across calls: an image met before is not run again (a cutout on its
    true mask is the same picture in every variant that keeps the cell, 4 of the 7)."""
    to_ds = np.array([classes.index(c) if c in classes else -1 for c in predictor.classes])
    batch_size = batch_size or (256 if predictor.device.type == "cuda" else 64)
    seen = {} if seen is None else seen
    keys = [_content_key(im) for im in images]
    todo = list({k: im for k, im in zip(keys, images, strict=True) if k not in seen}.items())
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        batch = torch.stack([predictor.prepare(im) for _, im in chunk])
        for (k, _), y in zip(chunk, to_ds[predictor.logits(batch).argmax(axis=1)], strict=True):
            seen[k] = int(y)
    return np.array([seen[k] for k in keys], dtype=int)


def _content_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.tobytes(), digest_size=16, person=str(image.shape).encode()[:16]).digest()


def cam_shares(predictor: Predictor, inputs: list[np.ndarray], masks: list[np.ndarray],
               batch_size: int = 32) -> list[float]:
    """Grad-CAM (layer4, predicted class) energy share inside each true mask."""
    s = predictor.image_size
    shares: list[float] = []
    for i in range(0, len(inputs), batch_size):
        batch = torch.stack([predictor.prepare(im) for im in inputs[i:i + batch_size]])
        for cam, m in zip(gradcam_maps(predictor, batch), masks[i:i + batch_size], strict=True):
            shares.append(energy_inside(cam, resize_to(m, (s, s), is_mask=True)))
    return shares


@dataclass
class BiasResult:
    """The suite's JSON-ready summary plus example pictures for the report figure."""

    summary: dict[str, Any]
    examples: list[dict[str, Any]]


def _nanmean(v: list[float]) -> float | None:
    a = np.asarray(v, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def run_bias_suite(data_dir: Path, model_dir: Path, split: str = "test", seed: int = 0,
                   limit: int | None = None, cam_limit: int = 96, n_examples: int = 2,
                   progress: bool = True, device: str | torch.device | None = None,
                   onnx: str = "auto") -> BiasResult:
    """Score every discovered model on every variant of a split; returns summary + examples.

    device: where the models, the segmenter and Grad-CAM run (None: EVBATTERY_DEVICE, default auto).
    onnx: auto | on | off: the classifiers and the segmenter through ONNX Runtime (inference.cpu_onnx:
    fp32 models on CPUs without bf16, parity-checked, Grad-CAM stays on torch); auto when the suite makes at least
    ORT_MIN_FORWARDS forward passes per model, which repays the export."""
    from evbattery.core.devices import resolve_device

    if onnx not in ("auto", "on", "off"):
        raise ValueError(f"onnx={onnx!r}: expected auto, on or off")
    device = resolve_device(device)
    layout = DatasetLayout(Path(data_dir))
    seg, note = segmenter_or_note(Path(model_dir), device)
    notes = [note] if note else []
    evals = plan_evaluations(Path(model_dir), seg is not None, device)
    if not evals:
        raise FileNotFoundError(f"no best_model_<name>.pth checkpoints in {model_dir}")
    data = load_split(layout, split, limit, seed, progress)
    from evbattery.inference.cpu_onnx import attach_onnx_runtime

    if onnx != "off":
        runners = [*{id(e.predictor): e.predictor for e in evals}.values(), *([seg] if seg is not None else [])]
        for runner in runners:
            why = attach_onnx_runtime(runner, None if onnx == "on" else len(data.images) * len(VARIANT_NAMES))
            if why and onnx == "on":
                notes.append(why)
    partners = choose_partners(data.labels, len(data.classes), seed, data.bg_owners)
    partner_rule = ("home families from the dataset card (a background belongs to the class whose home family it is)"
                    if data.bg_owners is not None else "the donor photo's class")
    n = len(data.images)
    rng = np.random.default_rng(seed + 1)
    example_idx = sorted(rng.choice(n, size=min(n_examples, n), replace=False).tolist())
    examples: list[dict[str, Any]] = [{"sample": data.samples[i].key, "variants": {}, "overlays": {}}
                                      for i in example_idx]
    sources = {e.source for e in evals}
    seg_iou: list[float] = []
    for variant in tqdm(VARIANT_NAMES, desc="variants", disable=not progress):
        photos = build_variant(variant, data.images, data.masks, partners)
        inputs = {"photo": photos}
        if "true" in sources:
            inputs["true"] = [make_cutout(p, m) for p, m in zip(photos, data.masks, strict=True)]
        if "pred" in sources:
            pmasks = seg.predict_masks(photos)
            inputs["pred"] = [make_cutout(p, m) for p, m in zip(photos, pmasks, strict=True)]
            if variant == "original":
                seg_iou = [_iou(p, t) for p, t in zip(pmasks, data.masks, strict=True)]
        for ex, i in zip(examples, example_idx, strict=True):
            ex["variants"][variant] = photos[i]
        for ev in evals:
            ev.preds[variant] = predict_indices(ev.predictor, inputs[ev.source], data.classes, seen=ev.seen)
            ev.example_inputs += [(k, variant, inputs[ev.source][i]) for k, i in enumerate(example_idx)]
        if variant == "original":
            cam_idx = np.sort(rng.choice(n, size=min(cam_limit, n), replace=False))
            for ev in evals:
                ins = inputs[ev.source]
                ev.shares = cam_shares(ev.predictor, [ins[i] for i in cam_idx], [data.masks[i] for i in cam_idx])
    for ev in evals:  # one Grad-CAM batch per model for all example pictures
        if ev.example_inputs:
            batch = torch.stack([ev.predictor.prepare(im) for _, _, im in ev.example_inputs])
            for (k, variant, im), cam in zip(ev.example_inputs, gradcam_maps(ev.predictor, batch), strict=True):
                examples[k]["overlays"].setdefault(ev.label, {})[variant] = overlay(im, cam)
    groups = data.groups
    if groups is None:
        notes.append("the dataset card records no background family for some images: no group accuracy")
    models = {}
    for ev in evals:
        acc = {v: accuracy(data.labels, ev.preds[v]) for v in VARIANT_NAMES}
        entry: dict[str, Any] = {
            "model": ev.model, "input_type": ev.predictor.input_type, "source": ev.source,
            "source_description": SOURCES[ev.source], "checkpoint": ev.predictor.source,
            "backend": ev.predictor.backend,
            "debias": ev.predictor.meta.get("debias"), "n": n, "accuracy": acc, "bg_gap": bg_gap(acc),
            "bg_only_accuracy": {v: acc[v] for v in ("no_fg", "only_bg_t")},
            "gradcam_inside": {"mean": _nanmean(ev.shares), "n": len(ev.shares),
                               "median": float(np.nanmedian(ev.shares)) if _nanmean(ev.shares) is not None
                               else None, "histogram": share_histogram(ev.shares)},
        }
        if groups is not None:
            per = group_accuracy(data.labels, ev.preds["original"], groups)
            entry["groups"] = per
            entry["worst_group"] = worst_group(per)
            entry["worst_group_noise"] = worst_group_noise(per)
            entry["mean_group_accuracy"] = float(np.mean([g["accuracy"] for g in per.values()]))
            if data.home_families:
                entry["home_vs_other"] = home_vs_other(per, data.home_families)
                if entry["home_vs_other"] is not None:
                    entry["home_vs_other"]["null"] = home_gap_null(per, data.home_families)
                for by in ("donor", "cell"):
                    entry[f"mixed_rand_by_{by}"] = mixed_rand_family_split(data, partners["mixed_rand"],
                                                                           ev.preds["mixed_rand"], by)
        models[ev.label] = entry
    summary = {
        "split": split, "data_dir": str(data_dir), "model_dir": str(model_dir), "seed": seed, "n_images": n,
        "classes": list(data.classes), "variants": list(VARIANT_NAMES), "evaluations": models,
        "agreement_original": pairwise_agreement(data.labels, {e.label: e.preds["original"] for e in evals}),
        "segmenter_iou_original": _nanmean(seg_iou) if seg_iou else None,
        "segmenter_backend": seg.backend if seg is not None else None,
        "families": sorted({f for f in data.families if f}), "mixed_partner_rule": partner_rule, "notes": notes,
    }
    return BiasResult(summary, examples)


def mixed_rand_family_split(data: SplitData, donors: np.ndarray, preds: Sequence[int],
                            by: str = "donor") -> dict[str, Any] | None:
    """Mixed-Rand regrouped by (cell class x a family) and its home-vs-other gap; `by` picks the family.

    by="donor": the family of the background behind the cell. Every cell sits on a uniformly drawn
    background, so these groups differ only in the background behind a fixed set of cells: home minus
    other is BG-Gap's question (does a class's own kind of background help?) asked of every pair at once.
    by="cell": the family of the photo the cell was cut from. The background is now random, so a gap here
    says the cell's own pixels carry its photo's background (its antialiased rim, light the renderer or a
    camera put on it), which a background swap cannot remove. `home_gap_null` says whether either gap
    stands out from the pairs' spread (camouflage, sampling) under any other choice of home families.
    """
    if by not in ("donor", "cell"):
        raise ValueError(f"by {by!r}; expected donor or cell")
    fam = [data.families[j] for j in donors] if by == "donor" else list(data.families)
    if not data.home_families or any(f is None for f in fam):
        return None
    groups = [f"{data.classes[y]}/{f}" for y, f in zip(data.labels, fam, strict=True)]
    per = group_accuracy(data.labels, preds, groups)
    split = home_vs_other(per, data.home_families)
    return {"groups": per, "home_vs_other": split,
            "null": home_gap_null(per, data.home_families) if split is not None else None}


def _iou(pred: np.ndarray, true: np.ndarray) -> float:
    """IoU of two 0/255 masks (NaN when both are empty)."""
    inter, union = mask_iou(pred >= 128, true >= 128)
    return inter / union if union else float("nan")

"""The bias sweep: for each bias level rho, synthesise data, train every model, run the bias suite.

    <out>/rho_<r>/data/          generated dataset (train/val biased by rho, test balanced)
    <out>/rho_<r>/model/         best_model_<name>.pth per model + segmenter.pth
    <out>/rho_<r>/bias/          the suite's report (its report.json marks the level as done)
    <out>/segmenter/             the segmenter, trained once on the first level and reused
    <out>/sweep.{json,md,png}    Original / Mixed-Rand / worst-group accuracy against rho, one line per model

Resumable: a level with bias/report.json is skipped; inside a level, existing data and checkpoints are
kept (all of them are written atomically, so an interrupted run never leaves a half file).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evbattery.core.io import atomic_write_text
from evbattery.models.registry import model_path, segmenter_path

log = logging.getLogger(__name__)

# What each model of the sweep is, as TrainConfig overrides (issue 8: the debiased model is one more line).
MODEL_RECIPES: dict[str, dict[str, Any]] = {
    "images": {"input_type": "images"},
    "cutouts": {"input_type": "cutouts"},
    "images_debiased": {"input_type": "images", "debias": "bg-swap"},
}
# Measured here (2 cores, others on the CPU): ~75 training img/s at 128 px with bf16 autocast + channels_last
# on a CPU with native bf16 (AVX512-bf16), ~30 in fp32 on one without; cost scales with pixels. Inference
# ~3x a training step; generation ~0.04 s per 96-px image per core.
TRAIN_IMG_S_AT_128 = {"bf16": 75.0, "fp32": 30.0}
INFER_SPEEDUP = 3.0
SEGMENTER_SPEED = 0.4  # U-Net segmenter vs classifier training rate (measured 31 vs ~75-80 img/s at 128 px, bf16)
GEN_S_PER_IMG_96 = 0.04
STARTUP_S = 10.0  # per training run or suite: process-level setup, model building, data decoding
# One H200 (issue 23, a plain loop with the same data path): ResNet-18 at 224 px ~9,800 training img/s; the
# generator ~700 photos/s on 16 processes; the suite is host-bound (decoding, variants, resizes).
GPU_TRAIN_IMG_S_AT_224 = 9800.0
GPU_GEN_IMG_S = 700.0
GPU_SUITE_S_PER_TEST_IMG = 0.012


@dataclass(frozen=True)
class SweepProfile:
    """Data size and training recipe of one sweep level."""

    name: str
    image_size: int
    n_train: int          # images in the split (classes cycle, so balanced)
    n_val: int
    n_test: int           # a multiple of 27 = 3 classes x 9 families keeps every group equal
    epochs: int
    seg_epochs: int
    cutout_epochs: int | None = None  # the cutout model learns in a few epochs (measured); None = epochs
    batch_size: int = 32
    lr: float = 1e-3
    swap_prob: float = 1.0  # every training photo on a random background (Xiao et al. trained on Mixed-Rand)
    models: tuple[str, ...] = ("images", "cutouts", "images_debiased")
    cam_limit: int = 96
    workers: int | None = 2  # generator processes (None: every usable core)
    pretrained: str = "auto"
    # The training recipe (TrainConfig fields; the defaults are the quick/medium profiles' recipe).
    optimizer: str = "adam"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    scheduler: str = "cosine"
    lr_scaling: str = "none"
    warmup_pct: float = 0.25
    seg_batch_size: int | None = None  # the segmenter's batch (None: batch_size)

    def epochs_for(self, model: str) -> int:
        """Epochs of one model of the sweep."""
        if MODEL_RECIPES[model]["input_type"] == "cutouts" and self.cutout_epochs is not None:
            return self.cutout_epochs
        return self.epochs

    def describe(self) -> str:
        """One line for the console."""
        epochs = ", ".join(f"{m} {self.epochs_for(m)}" for m in self.models)
        return (f"{self.image_size} px, {self.n_train}/{self.n_val}/{self.n_test} train/val/test images, "
                f"epochs: {epochs}, segmenter {self.seg_epochs}")


PROFILES: dict[str, SweepProfile] = {
    # <= 20 min on a 2-core CPU for 4 levels (estimate printed up front).
    # Many distinct photos seen once or twice rather than few photos seen often: measured here, ResNet-18
    # from scratch memorises 600 photos by their backgrounds (train 94 %, val 32 %) before it finds the
    # cell, while on 9,000 distinct photos train and val accuracy rise together.
    "quick": SweepProfile("quick", image_size=96, n_train=1200, n_val=96, n_test=189, epochs=2, seg_epochs=2,
                          cutout_epochs=2, cam_limit=64),
    # ~46 min per level with bf16 (92.5 min measured for 2 levels): at 128 px on 9,000 distinct photos a from-scratch image model leaves chance
    # after ~3 epochs and reaches ~63 % val at 6 (measured), so shortcut and robustness can be told apart.
    # 900 test photos = 33 per (class x family) group.
    "medium": SweepProfile("medium", image_size=128, n_train=9000, n_val=450, n_test=900, epochs=6, seg_epochs=2,
                           cutout_epochs=3, cam_limit=96),
    # One GPU (issue 23; `--device cuda`): the seed's 224 px, 24,000 distinct training photos per level, the
    # recipe a plain loop measured on one H200 (batch 256, AdamW + one-cycle, label smoothing 0.1: image model
    # 97.2 % after 12 epochs and 99.5 % after 30; cutout model 99.7 % after 12), lr 1e-3 scaled by
    # sqrt(256 / 32) to 2.8e-3. 5,400 test photos = 200 per (class x family) group, so a worst group can be
    # told from chance by the report's own null. Generation uses every core. On a CPU this takes days.
    "full": SweepProfile("full", image_size=224, n_train=24000, n_val=1350, n_test=5400, epochs=30, seg_epochs=8,
                         cutout_epochs=12, batch_size=256, lr=1e-3, cam_limit=256, workers=None,
                         optimizer="adamw", weight_decay=0.05, label_smoothing=0.1, scheduler="onecycle",
                         lr_scaling="sqrt", warmup_pct=0.2, seg_batch_size=128),
    # Tests and smoke runs only: proves the plumbing in well under 2 minutes, says nothing about bias.
    "smoke": SweepProfile("smoke", image_size=64, n_train=12, n_val=6, n_test=27, epochs=1, seg_epochs=1,
                          batch_size=8, cam_limit=8, workers=1, pretrained="none"),
}


def estimate_seconds(p: SweepProfile, n_levels: int, train_segmenter: bool = True,
                     device: str | None = "cpu") -> float:
    """Rough wall-clock estimate of a sweep on the 2-core CPU, or on one H200 for a CUDA device (see the
    constants above)."""
    from evbattery.core.devices import cpu_supports_bf16, is_cuda, resolve_device

    if device != "cpu" and is_cuda(resolve_device(device)):
        rate = GPU_TRAIN_IMG_S_AT_224 * (224 / p.image_size) ** 2
        epochs = sum(p.epochs_for(m) for m in p.models)
        train = n_levels * epochs * p.n_train / rate
        seg = p.seg_epochs * p.n_train / (rate * SEGMENTER_SPEED) if train_segmenter else 0.0
        rest = n_levels * ((p.n_train + p.n_val + p.n_test) / GPU_GEN_IMG_S + p.n_test * GPU_SUITE_S_PER_TEST_IMG
                           + STARTUP_S * (len(p.models) + 1))
        return train + seg + rest

    train_rate = TRAIN_IMG_S_AT_128["bf16" if cpu_supports_bf16() else "fp32"] * (128 / p.image_size) ** 2
    infer_rate = train_rate * INFER_SPEEDUP
    n_tr, n_va, n_te = p.n_train, p.n_val, p.n_test
    per_epoch = n_tr / train_rate + n_va / infer_rate
    n_evals = len(p.models) + ("cutouts" in p.models)  # cutouts scored with true and predicted masks
    suite = (7 * n_te * (n_evals + 1)) / infer_rate + min(p.cam_limit, n_te) * n_evals / train_rate
    gen = (n_tr + n_va + n_te) * GEN_S_PER_IMG_96 * (p.image_size / 96) ** 2 / 2
    seg = p.seg_epochs * n_tr / (train_rate * SEGMENTER_SPEED) if train_segmenter else 0.0
    fixed = STARTUP_S * (len(p.models) + 1)
    return n_levels * (sum(p.epochs_for(m) for m in p.models) * per_epoch + suite + gen + fixed) + seg


def level_dir(out: Path, rho: float) -> Path:
    """<out>/rho_<r>."""
    return Path(out) / f"rho_{rho:g}"


def _train(p: SweepProfile, data: Path, model_dir: Path, runs: Path, seed: int, name: str | None,
           epochs: int, device: str | None = None, **overrides: Any) -> dict[str, Any]:
    from evbattery.training.config import TrainConfig
    from evbattery.training.train import main as train_main

    recipe = {"optimizer": p.optimizer, "weight_decay": p.weight_decay, "label_smoothing": p.label_smoothing,
              "scheduler": p.scheduler, "lr_scaling": p.lr_scaling, "warmup_pct": p.warmup_pct,
              "batch_size": p.batch_size}
    if device is not None:
        recipe["device"] = str(device)
    cfg = TrainConfig(data_dir=str(data), model_dir=str(model_dir), runs_dir=str(runs), epochs=epochs,
                      lr=p.lr, image_size=p.image_size, seed=seed, pretrained=p.pretrained, tracker="none",
                      name=name, **{**recipe, **overrides})
    return train_main(cfg)


def ensure_segmenter(p: SweepProfile, out: Path, data: Path, seed: int, device: str | None = None) -> Path:
    """The sweep's segmenter: trained once (on the first level's data) into <out>/segmenter/."""
    seg_dir = Path(out) / "segmenter"
    target = segmenter_path(seg_dir)
    if target.is_file():
        return target
    _train(p, data, seg_dir, Path(out) / "runs", seed, None, p.seg_epochs, device, input_type="masks",
           batch_size=p.seg_batch_size or p.batch_size, label_smoothing=0.0)
    if not target.is_file():  # accept the classifier-style name too
        alt = model_path(seg_dir, "segmenter")
        if not alt.is_file():
            raise RuntimeError(f"segmenter training wrote neither {target} nor {alt}")
        os.replace(alt, target)
    return target


def _place(src: Path, dst: Path) -> None:
    """Hard-link (or copy) a file into a level's model folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run_level(rho: float, p: SweepProfile, out: Path, seed: int, segmenter: Path | None,
              device: str | None = None) -> dict[str, Any]:
    """Data, models, segmenter and bias report of one level (training and the suite on `device`); returns the
    report summary, with the seconds each stage took under "timings"."""
    import time

    from evbattery.data.synth.generate import generate_dataset
    from evbattery.evaluation.bias import run_bias_suite
    from evbattery.evaluation.bias_report import write_bias_report

    d = level_dir(out, rho)
    data, models = d / "data", d / "model"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not (data / "dataset.json").is_file():
        log.info("rho=%g: generating data in %s", rho, data)
        generate_dataset(out=data, n_train=p.n_train, n_val=p.n_val, n_test=p.n_test, size=p.image_size,
                         bias=rho, seed=seed, workers=p.workers, overwrite=True, progress=True)
        timings["generate"] = time.perf_counter() - t0
    for name in p.models:
        if not model_path(models, name).is_file():
            log.info("rho=%g: training %s", rho, name)
            t0 = time.perf_counter()
            _train(p, data, models, d / "runs", seed, name, p.epochs_for(name), device, swap_prob=p.swap_prob,
                   **MODEL_RECIPES[name])
            timings[f"train_{name}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _place(segmenter or ensure_segmenter(p, out, data, seed, device), segmenter_path(models))
    timings["segmenter"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = run_bias_suite(data, models, split="test", seed=seed, cam_limit=p.cam_limit, device=device)
    timings["bias_suite"] = time.perf_counter() - t0
    result.summary["rho"] = rho
    result.summary["profile"] = asdict(p)
    result.summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    write_bias_report(result, d / "bias")
    return json.loads((d / "bias" / "report.json").read_text())


HEADLINES = (("original", "Original"), ("mixed_rand", "Mixed-Rand"), ("worst_group", "Worst group"))


def headline(entry: dict[str, Any]) -> dict[str, float | None]:
    """Original, Mixed-Rand, worst-group accuracy and BG-Gap of one evaluation of a report."""
    wg = entry.get("worst_group") or {}
    return {"original": entry["accuracy"]["original"], "mixed_rand": entry["accuracy"]["mixed_rand"],
            "worst_group": wg.get("accuracy"), "bg_gap": entry["bg_gap"]}


def run_sweep(rhos: list[float], p: SweepProfile, out: Path, seed: int = 0,
              segmenter: Path | None = None, device: str | None = None) -> dict[str, Any]:
    """Every level (skipping finished ones), then sweep.json / sweep.md / sweep.png; returns the summary.

    device: where training and the suite run (auto | cpu | cuda | cuda:N; None: EVBATTERY_DEVICE, default auto).
    """
    from evbattery.core.devices import resolve_device

    out = Path(out)
    device = str(resolve_device(device))  # a missing GPU fails here, before any data is generated
    levels: dict[str, dict[str, Any]] = {}
    for rho in rhos:
        done = level_dir(out, rho) / "bias" / "report.json"
        if done.is_file():
            log.info("rho=%g: results exist (%s), skipped", rho, done)
            report = json.loads(done.read_text())
        else:
            report = run_level(rho, p, out, seed, segmenter, device)
        levels[f"{rho:g}"] = {label: headline(e) for label, e in report["evaluations"].items()}
    summary = {"profile": asdict(p), "seed": seed, "device": device, "levels": levels}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(summary, indent=2) + "\n")
    cols, rows = sweep_rows(summary)
    md = [f"# Bias sweep ({p.name} profile)", "", p.describe(), "", "Accuracies in % on the balanced test split; BG-Gap = acc(Mixed-Same) − acc(Mixed-Rand) in points, "
          "Mixed-Same backgrounds taken from the class's home families.",
          "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols), *["| " + " | ".join(r) + " |" for r in rows],
          "", "![sweep](sweep.png)", ""]
    atomic_write_text(out / "sweep.md", "\n".join(md))
    plot_sweep(summary, out / "sweep.png")
    return summary


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def sweep_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Table: one row per (rho, model)."""
    cols = ["rho", "model", "Original", "Mixed-Rand", "BG-Gap", "worst group"]
    rows = [[rho, label, _pct(h["original"]), _pct(h["mixed_rand"]), _pct(h["bg_gap"]), _pct(h["worst_group"])]
            for rho, ev in summary["levels"].items() for label, h in ev.items()]
    return cols, rows


def plot_sweep(summary: dict[str, Any], path: Path) -> Path:
    """Accuracy panels (Original, Mixed-Rand, worst group) and a BG-Gap panel against rho, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rhos = list(summary["levels"])
    labels = list(dict.fromkeys(lab for ev in summary["levels"].values() for lab in ev))
    panels = (*HEADLINES, ("bg_gap", "BG-Gap (Mixed-Same − Mixed-Rand)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for lab in labels:
            pts = [(float(r), summary["levels"][r][lab][key]) for r in rhos
                   if lab in summary["levels"][r] and summary["levels"][r][lab][key] is not None]
            if pts:
                ax.plot([x for x, _ in pts], [100 * y for _, y in pts], marker="o", label=lab)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("bias ρ (train/val)")
        ax.grid(alpha=0.3)
        if key == "bg_gap":
            ax.axhline(0, color="k", lw=0.8)
            ax.set_ylabel("points")
        else:
            ax.set_ylim(0, 105)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""The flat training config (nanoGPT style): one dataclass of typed values; asdict() goes unchanged
into the tracker, runs/<id>/config.json and the checkpoint."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# DataLoader workers. On a 2-core CPU the training threads already fill both cores, and workers doing the
# augmentation compete with them: `evbattery bench train` measured 79.6 img/s with 0 workers against 71.2
# with 1 and 64.5 with 2 (128 px, bf16). Bigger machines get workers that overlap augmentation with compute.
DEFAULT_WORKERS = 0 if (os.cpu_count() or 1) <= 2 else min(4, (os.cpu_count() or 2) // 2)
INPUT_TYPES = ("images", "cutouts", "masks")  # masks = train the segmenter
DEBIAS_METHODS = (None, "bg-swap")
TRACKERS = ("wandb", "none")
SEGMENTER_ARCHS = ("unet_resnet18", "lraspp_mobilenet_v3_large")  # = evbattery.models.segmenter.ARCHS
# Fields that must match for --resume to continue a run (the rest, e.g. workers or tracker, may change).
RESUME_ESSENTIALS = ("input_type", "data_dir", "batch_size", "lr", "image_size", "seed", "pretrained", "zoom_prob",
                     "debias", "swap_prob", "swap_synth_share", "bg_fade_epochs", "name", "limit_train", "epochs", "scheduler", "segmenter_arch",
                     "head", "mask_loss_weight", "optimizer", "weight_decay", "label_smoothing", "lr_scaling",
                     "warmup_pct")
HEADS = ("avgpool", "mask_attention")  # = evbattery.models.classifier.HEADS
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("cosine", "step", "onecycle")
LR_SCALINGS = ("none", "sqrt", "linear")
LR_BASE_BATCH = 32  # lr_scaling scales lr by (batch_size / LR_BASE_BATCH) or its square root


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the seed's recipe."""

    input_type: str = "images"      # images | cutouts | masks (segmenter)
    data_dir: str = "data/processed"
    model_dir: str = "model"
    runs_dir: str = "runs"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3                # Adam / AdamW (the peak with onecycle), at LR_BASE_BATCH unless lr_scaling
    lr_scaling: str = "none"        # none | sqrt | linear: lr x (batch_size / 32) ** (1/2 | 1)
    optimizer: str = "adam"         # adam | adamw (decoupled weight decay); fused kernels on CPU and CUDA
    weight_decay: float = 0.0       # L2 (adam) or decoupled (adamw) weight decay
    label_smoothing: float = 0.0    # classifiers: cross-entropy label smoothing (0 = off)
    image_size: int = 224           # square input; the full frame is resized (no crop)
    workers: int = DEFAULT_WORKERS  # DataLoader workers (0 = main process; see DEFAULT_WORKERS)
    seed: int = 0
    pretrained: str = "auto"        # auto | imagenet | none | PATH
    tracker: str = "wandb"          # wandb (offline unless a key and EVBATTERY_WANDB=online) | none
    fast: bool = True               # channels_last; bf16 autocast only where the CPU has native bf16
    resume: bool = False            # continue from model/last_<name>.pth
    debias: str | None = None       # None | bg-swap (background-randomised training, issue 8)
    swap_prob: float = 1.0          # probability of a background swap per training sample (1 = Mixed-Rand only)
    swap_synth_share: float = 0.25  # share of swaps onto a freshly rendered background, not another photo's
    zoom_prob: float = 0.0          # probability of an object-preserving zoom crop (classifiers only)
    bg_fade_epochs: int = 0         # images only: the background fades in from the cutout fill over this many
                                    # epochs (alpha (e+1)/(N+1)); a start for a model begun from the cutout model
    batch_augment: bool = True      # augment whole batches in the loop (data/augment.py); off: torchvision v2 per
                                    # sample in the Dataset
    precise_bn: int = 512           # recompute BN statistics on this many un-augmented train images per epoch
                                    # (0 = off)
    name: str | None = None         # model name; default input_type, or images_debiased with bg-swap
    limit_train: int | None = None  # cap on training samples (quick profiles, tests)
    wandb_project: str = "evbattery"
    scheduler: str = "cosine"       # cosine | step (per epoch) | onecycle (per step: warm-up, then cosine down)
    warmup_pct: float = 0.25        # onecycle: share of the steps spent warming up to the peak lr
    segmenter_arch: str = "unet_resnet18"  # masks only: unet_resnet18 | lraspp_mobilenet_v3_large
    head: str = "avgpool"           # classifiers: avgpool (torchvision's) | mask_attention (models/mask_attention.py)
    mask_loss_weight: float = 1.0   # mask_attention: weight of the attention-vs-mask loss beside cross-entropy
    progress: bool = True           # progress bars
    device: str = "auto"            # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N; torchrun: cuda:LOCAL_RANK
    compile: bool = False           # torch.compile the model (opt-in: costs compile time, pays on long GPU runs)

    def __post_init__(self) -> None:
        if self.input_type not in INPUT_TYPES:
            raise ValueError(f"input_type {self.input_type!r}; expected one of {', '.join(INPUT_TYPES)}")
        if self.debias not in DEBIAS_METHODS:
            raise ValueError(f"debias {self.debias!r}; expected one of none, bg-swap")
        if self.debias and self.input_type != "images":
            raise ValueError("--debias bg-swap applies to --input-type images only")
        if self.tracker not in TRACKERS:
            raise ValueError(f"tracker {self.tracker!r}; expected one of {', '.join(TRACKERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling {self.lr_scaling!r}; expected one of {', '.join(LR_SCALINGS)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing {self.label_smoothing} must be within [0, 1)")
        if not 0.0 < self.warmup_pct < 1.0:
            raise ValueError(f"warmup_pct {self.warmup_pct} must be within (0, 1)")
        from evbattery.devices import check_device_spec

        self.device = check_device_spec(self.device)  # the form only; availability is checked when training starts
        if self.segmenter_arch not in SEGMENTER_ARCHS:
            raise ValueError(f"segmenter_arch {self.segmenter_arch!r}; expected one of {', '.join(SEGMENTER_ARCHS)}")
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r}; expected one of {', '.join(HEADS)}")
        if self.head != "avgpool" and self.input_type == "masks":
            raise ValueError("--head applies to the classifiers (--input-type images | cutouts), not the segmenter")
        if self.mask_loss_weight < 0:
            raise ValueError(f"mask_loss_weight must be >= 0, got {self.mask_loss_weight}")
        if not 0.0 <= self.swap_synth_share <= 1.0:
            raise ValueError(f"swap_synth_share {self.swap_synth_share} must be within [0, 1]")
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ValueError(f"swap_prob {self.swap_prob} must be within [0, 1]")
        if not 0.0 <= self.zoom_prob <= 1.0:
            raise ValueError(f"zoom_prob {self.zoom_prob} must be within [0, 1]")
        if self.bg_fade_epochs < 0:
            raise ValueError(f"bg_fade_epochs must be >= 0, got {self.bg_fade_epochs}")
        if self.bg_fade_epochs and self.input_type != "images":
            raise ValueError("--bg-fade-epochs applies to --input-type images only (cutouts have no background)")
        for f in ("epochs", "batch_size", "image_size"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")

    @property
    def model_name(self) -> str:
        """Name of the saved model (best_model_<name>.pth)."""
        if self.name:
            return self.name
        if self.input_type == "masks":
            return "segmenter"
        return "images_debiased" if self.debias == "bg-swap" else self.input_type

    @property
    def effective_lr(self) -> float:
        """lr after lr_scaling for this batch size (the optimizer's lr; onecycle's peak)."""
        ratio = self.batch_size / LR_BASE_BATCH
        return self.lr * {"none": 1.0, "sqrt": ratio ** 0.5, "linear": ratio}[self.lr_scaling]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the tracker, config.json and the checkpoint)."""
        return asdict(self)


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Essential fields where a saved config differs from cfg (used to refuse a bad --resume)."""
    now = cfg.as_dict()
    out = []
    for k in RESUME_ESSENTIALS:
        if k in saved and saved[k] != now.get(k):
            out.append(f"{k}: checkpoint {saved[k]!r} vs now {now.get(k)!r}")
    return out


def field_names() -> list[str]:
    """All config field names (for CLI overrides)."""
    return [f.name for f in fields(TrainConfig)]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a configs/*.py file of plain assignments (nanoGPT's configurator), type-checked.

    An unknown name raises ValueError listing the valid ones; a value of another type than the field's
    default raises ValueError naming the field.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} not found")
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    values = {k: v for k, v in namespace.items() if not k.startswith("_")}
    defaults = TrainConfig()
    names = field_names()
    for k, v in values.items():
        if k not in names:
            raise ValueError(f"{path}: unknown setting {k!r}; valid: {', '.join(names)}")
        d = getattr(defaults, k)
        ok = v is None or d is None or isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int))
        if not ok or (isinstance(d, int) and not isinstance(d, bool) and isinstance(v, bool)):
            raise ValueError(f"{path}: {k} = {v!r} should be {type(d).__name__} like the default {d!r}")
    return values

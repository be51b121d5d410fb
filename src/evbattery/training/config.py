"""The flat training config (nanoGPT style): one dataclass of typed values; asdict() goes unchanged into the
tracker, runs/<id>/config.json and the checkpoint.

It is also the one source of the training options: each field's type, default and help (its `opt()` metadata)
generate both `evbattery train`'s options (cli/train.py) and `python -m evbattery.train`'s flags
(`get_args_parser`). One precedence rule for both: defaults < config file (--config configs/*.py) < flags
(or their environment variables); nothing beats a flag.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from evbattery.core.config import check_device_spec
from evbattery.models.archs import CLASSIFIER_ARCHS, HEADS, SEGMENTER_ARCHS

# DataLoader workers. On a 2-core CPU the training threads already fill both cores, and workers doing the
# augmentation compete with them: `evbattery bench train` measured 79.6 img/s with 0 workers against 71.2
# with 1 and 64.5 with 2 (128 px, bf16). Bigger machines get workers that overlap augmentation with compute.
DEFAULT_WORKERS = 0 if (os.cpu_count() or 1) <= 2 else min(4, (os.cpu_count() or 2) // 2)
TRAIN_INPUTS = ("images", "cutouts", "masks")  # masks = train the segmenter
DEBIAS_METHODS = (None, "bg-swap")
TRACKERS = ("wandb", "none")
SCHEDULERS = ("cosine", "step", "onecycle")
OPTIMIZERS = ("adam", "adamw")
LR_SCALINGS = ("none", "sqrt", "linear")
LR_BASE_BATCH = 32  # lr_scaling scales lr by (batch_size / LR_BASE_BATCH) or its square root
# Fields that must match for --resume to continue a run (the rest, e.g. workers or tracker, may change).
RESUME_ESSENTIALS = ("input_type", "data_dir", "batch_size", "lr", "image_size", "seed", "pretrained", "zoom_prob",
                     "debias", "swap_prob", "swap_synth_share", "bg_fade_epochs", "name", "limit_train", "epochs",
                     "scheduler", "segmenter_arch", "head", "mask_loss_weight", "arch", "optimizer", "weight_decay",
                     "label_smoothing", "lr_scaling", "warmup_pct", "train_layers", "probe_c",
                     "probe_shift_copies", "cutout_masks", "cutout_segmenter")
TRAIN_LAYERS = ("all", "head", "none")
CUTOUT_MASKS = ("true", "segmenter", "both")  # what a cutout probe's training cutouts are cut with
NONE_WORDS = ("none", "")  # what a flag says for "off" where the field is optional (debias, name)


def opt(default: Any, help: str, *flags: str, envvar: str | None = None) -> Any:
    """A config field with the metadata the CLI and argparse flags are generated from."""
    return field(default=default, metadata={"help": help, "flags": flags, "envvar": envvar})


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the seed's recipe."""

    input_type: str = opt("images", "images | cutouts | masks (the segmenter). Default: $INPUT_TYPE or images.",
                          "--input-type", "-t", envvar="INPUT_TYPE")
    data_dir: str = opt("data/processed", "Dataset root (the folder with dataset.json).", "--data", "-d",
                        "--data-dir", envvar="EVBATTERY_DATA_DIR")
    model_dir: str = opt("model", "Checkpoint folder.", "--model-dir", envvar="EVBATTERY_MODEL_DIR")
    runs_dir: str = opt("runs", "Per-run logs (config.json, metrics.jsonl).", "--runs-dir",
                        envvar="EVBATTERY_RUNS_DIR")
    epochs: int = opt(10, "Epochs.")
    batch_size: int = opt(32, "Batch size (per process).")
    lr: float = opt(1e-3, "Learning rate (the peak with onecycle), at batch 32 unless --lr-scaling.")
    lr_scaling: str = opt("none", "none | sqrt | linear: lr x (batch_size / 32) ** (1/2 | 1).")
    optimizer: str = opt("adam", "adam | adamw (decoupled weight decay); fused kernels on CPU and CUDA.")
    weight_decay: float = opt(0.0, "L2 (adam) or decoupled (adamw) weight decay.")
    label_smoothing: float = opt(0.0, "Classifiers: cross-entropy label smoothing (0 = off).")
    image_size: int = opt(224, "Square input side; the full frame is resized (no crop).", "--image-size", "--size")
    workers: int = opt(DEFAULT_WORKERS, "DataLoader workers (default: 0 on a 2-core CPU, where workers slow "
                                        "training).")
    seed: int = opt(0, "Random seed.")
    arch: str = opt("resnet18", "Classifier backbone: " + " | ".join(CLASSIFIER_ARCHS) + ".")
    pretrained: str = opt("auto", "auto | imagenet | none | PATH. auto: ImageNet weights where they are on disk "
                                  "(EfficientNet-Lite0's ship with the package; ResNet-18's only from torch's "
                                  "cache).")
    train_layers: str = opt("all", "Classifiers: all (fine-tune the whole network) | head (a linear probe: the "
                                   "pretrained backbone stays frozen and only the head is fitted, an L2 logistic "
                                   "regression on its features in one pass; --epochs and the optimizer do not "
                                   "apply). head keeps the ImageNet features real photos need. none: the "
                                   "segmenter (-t masks) as its pretrained weights have it, scored on val and "
                                   "saved (--segmenter-arch u2netp: salient objects in real photos).")
    probe_c: float = opt(3e-4, "With --train-layers head: inverse L2 strength of the probe on standardised "
                               "features (smaller = simpler head).")
    probe_shift_copies: int = opt(3, "With --train-layers head: corrupted copies of each val photo (blur, JPEG, "
                                     "noise, contrast, colour, zoom, rotation) the confidence's temperature is "
                                     "fitted on, with the clean ones; 0 = the clean val photos only.")
    cutout_masks: str = opt("true", "Cutout probes: the masks the training and val cutouts are cut with: true (the "
                                    "dataset's) | segmenter (a segmenter's predictions, what a photo uploaded "
                                    "without a mask gets) | both (each photo twice).")
    cutout_segmenter: str | None = opt(None, "With --cutout-masks segmenter | both: the segmenter checkpoint "
                                             "(default <model_dir>/segmenter.pth).")
    tracker: str = opt("wandb", "wandb (offline unless a key and EVBATTERY_WANDB=online) | none.")
    fast: bool = opt(True, "channels_last, and bf16 autocast where the CPU has native bf16.")
    resume: bool = opt(False, "Continue from model/last_<name>.pth (same config).")
    debias: str | None = opt(None, "none | bg-swap (background-randomised training of the image model).")
    swap_prob: float = opt(1.0, "bg-swap probability per training sample (1: every photo on a random background; "
                                "below 1 the home backgrounds still predict the class).")
    swap_synth_share: float = opt(0.25, "bg-swap: share of swaps onto a freshly rendered background instead of "
                                        "another training photo's (whose own cell leaves traces).")
    zoom_prob: float = opt(0.0, "Probability of an object-preserving zoom crop per sample (classifiers).")
    bg_fade_epochs: int = opt(0, "Images only: fade the background in from the cutout fill over the first N "
                                 "epochs (for a start from the cutout model; 0 = off).")
    batch_augment: bool = opt(True, "Augment whole batches in the training loop (one grid_sample); "
                                    "--no-batch-augment: torchvision v2 per sample.")
    precise_bn: int = opt(512, "Recompute BatchNorm statistics on this many un-augmented training images after "
                               "each epoch (0 = off).")
    name: str | None = opt(None, "Model name (default: the input type, or images_debiased with bg-swap).")
    limit_train: int | None = opt(None, "Use at most this many training images (0 or unset = all).")
    wandb_project: str = opt("evbattery", "W&B project.")
    scheduler: str = opt("cosine", "cosine | step (per epoch) | onecycle (per step: warm-up, then cosine down).")
    warmup_pct: float = opt(0.25, "onecycle: share of the steps spent warming up to the peak lr.")
    segmenter_arch: str = opt("unet_resnet18", "With -t masks: " + " | ".join(SEGMENTER_ARCHS) + ".")
    head: str = opt("avgpool", "Classifiers: avgpool | mask_attention (ResNet-18: an attention pool taught the "
                               "cell's mask in training; inference needs no mask).")
    mask_loss_weight: float = opt(1.0, "With --head mask_attention: weight of the attention-vs-mask loss.")
    progress: bool = opt(True, "Progress bars and the summary table.")
    device: str = opt("auto", "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N; under torchrun each "
                              "rank takes cuda:LOCAL_RANK.", envvar="EVBATTERY_DEVICE")
    compile: bool = opt(False, "torch.compile the model (opt-in: costs compile time, pays on long GPU runs).")

    def __post_init__(self) -> None:
        if self.debias in NONE_WORDS:
            self.debias = None
        if self.name in NONE_WORDS:
            self.name = None
        if self.limit_train == 0:
            self.limit_train = None
        choices = {"input_type": TRAIN_INPUTS, "tracker": TRACKERS, "scheduler": SCHEDULERS,
                   "segmenter_arch": SEGMENTER_ARCHS, "head": HEADS, "arch": CLASSIFIER_ARCHS,
                   "optimizer": OPTIMIZERS, "lr_scaling": LR_SCALINGS, "train_layers": TRAIN_LAYERS,
                   "cutout_masks": CUTOUT_MASKS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} {getattr(self, name)!r}; expected one of {', '.join(valid)}")
        if self.debias not in DEBIAS_METHODS:
            raise ValueError(f"debias {self.debias!r}; expected one of none, bg-swap")
        if self.debias and self.input_type != "images":
            raise ValueError("--debias bg-swap applies to --input-type images only")
        if self.head != "avgpool" and self.input_type == "masks":
            raise ValueError("--head applies to the classifiers (--input-type images | cutouts), not the segmenter")
        if self.head != "avgpool" and self.arch != "resnet18":
            raise ValueError(f"--head {self.head} is built on ResNet-18's layer4; use --arch resnet18")
        if self.train_layers == "head":
            if self.input_type == "masks":
                raise ValueError("--train-layers head applies to the classifiers, not the segmenter (-t masks)")
            if self.head != "avgpool" or self.debias:
                raise ValueError("--train-layers head fits a linear head on un-augmented photos; it does not combine "
                                 "with --head mask_attention or --debias bg-swap")
            if self.pretrained == "none":
                raise ValueError("--train-layers head needs a pretrained backbone (--pretrained auto | imagenet | "
                                 "PATH); a probe on random features learns nothing")
            if not self.probe_c > 0:
                raise ValueError(f"probe_c must be > 0, got {self.probe_c}")
            if self.probe_shift_copies < 0:
                raise ValueError(f"probe_shift_copies must be >= 0, got {self.probe_shift_copies}")
        if self.train_layers == "none" and (self.input_type != "masks" or self.pretrained == "none"):
            raise ValueError("--train-layers none keeps a pretrained segmenter as it is: it needs -t masks and "
                             "pretrained weights (--segmenter-arch u2netp --pretrained auto, or a segmenter PATH)")
        if self.cutout_masks != "true" and (self.input_type != "cutouts" or self.train_layers != "head"):
            raise ValueError(f"--cutout-masks {self.cutout_masks} applies to cutout probes (--input-type cutouts "
                             f"--train-layers head)")
        self.device = check_device_spec(self.device)  # the form only; availability is checked when training starts
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing {self.label_smoothing} must be within [0, 1)")
        if not 0.0 < self.warmup_pct < 1.0:
            raise ValueError(f"warmup_pct {self.warmup_pct} must be within (0, 1)")
        if self.mask_loss_weight < 0:
            raise ValueError(f"mask_loss_weight must be >= 0, got {self.mask_loss_weight}")
        for f in ("swap_synth_share", "swap_prob", "zoom_prob"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ValueError(f"{f} {getattr(self, f)} must be within [0, 1]")
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


@dataclass(frozen=True)
class OptionSpec:
    """One training option as the command lines see it: generated from a TrainConfig field."""

    name: str
    type: type
    default: Any
    help: str
    flags: tuple[str, ...]
    envvar: str | None
    optional: bool  # the field may be None ("none" / 0 on the command line)


def option_specs() -> list[OptionSpec]:
    """Every TrainConfig field as an OptionSpec, in declaration order."""
    out = []
    for f in fields(TrainConfig):
        ann = str(f.type)
        base = {"str": str, "int": int, "float": float, "bool": bool}[ann.split(" |")[0]]
        default = f.default if f.default is not MISSING else None
        flags = f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)
        out.append(OptionSpec(f.name, base, default, f.metadata.get("help", ""), tuple(flags),
                              f.metadata.get("envvar"), "None" in ann))
    return out


def field_names() -> list[str]:
    """All config field names."""
    return [f.name for f in fields(TrainConfig)]


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Essential fields where a saved config differs from cfg (used to refuse a bad --resume)."""
    now = cfg.as_dict()
    return [f"{k}: checkpoint {saved[k]!r} vs now {now.get(k)!r}" for k in RESUME_ESSENTIALS
            if k in saved and saved[k] != now.get(k)]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a configs/*.py file of plain assignments (nanoGPT's configurator), type-checked.

    An unknown name raises ValueError listing the valid ones; a value of another type than the field's
    raises ValueError naming the field.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} not found")
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    values = {k: v for k, v in namespace.items() if not k.startswith("_")}
    specs = {s.name: s for s in option_specs()}
    for k, v in values.items():
        if k not in specs:
            raise ValueError(f"{path}: unknown setting {k!r}; valid: {', '.join(specs)}")
        s = specs[k]
        ok = (v is None and s.optional) or isinstance(v, s.type) or (s.type is float and isinstance(v, int))
        if not ok or (s.type is not bool and isinstance(v, bool)):
            raise ValueError(f"{path}: {k} = {v!r} should be {s.type.__name__} like the default {s.default!r}")
    return values


def resolve_config(explicit: dict[str, Any], config_file: str | Path | None = None) -> TrainConfig:
    """The one precedence rule: defaults < config file < explicit values (flags or their env variables)."""
    values = load_config_file(config_file) if config_file else {}
    values.update(explicit)
    return TrainConfig(**values)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """`python -m evbattery.train` flags, generated from the TrainConfig fields (defaults shown)."""
    p = argparse.ArgumentParser(description="Train an evbattery model", add_help=add_help,
                                argument_default=argparse.SUPPRESS)  # unset flags stay out of the namespace
    p.add_argument("--config", default=None, help="configs/*.py file of assignments (flags win over it)")
    for s in option_specs():
        long_flags = [f for f in s.flags if f.startswith("--")]
        short = [f for f in s.flags if not f.startswith("--")]
        env = f"; ${s.envvar}" if s.envvar else ""
        helptext = f"{s.help} (default {s.default}{env})"
        if s.type is bool:
            p.add_argument(*long_flags, dest=s.name, action=argparse.BooleanOptionalAction, help=helptext)
        else:
            p.add_argument(*long_flags, *short, dest=s.name, type=s.type, help=helptext)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed flags, their environment variables and the --config file."""
    explicit = {s.name: os.environ[s.envvar] for s in option_specs() if s.envvar and s.envvar in os.environ}
    explicit.update({k: v for k, v in vars(args).items() if k != "config"})
    return resolve_config(explicit, getattr(args, "config", None))

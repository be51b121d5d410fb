"""Training in the torchvision-reference shape: train_one_epoch, evaluate, load_data, main(cfg) (the flags
come from training/config.py). One loop trains the classifiers (images / cutouts / images_debiased) and the segmenter
(input_type "masks"). Works alone or under torchrun (DDP, rank 0 logs and saves).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from evbattery.core.config import IMAGENET_MEAN, IMAGENET_STD, SEGMENTER_FILE, checkpoint_name
from evbattery.core.devices import autocast, bf16_supported, is_cuda, resolve_device
from evbattery.core.tracking import Tracker, new_run_id
from evbattery.data.augment import BatchAugment
from evbattery.data.layout import DatasetLayout
from evbattery.data.loaders import CachedDataset, check_classes, fade_alpha
from evbattery.data.transforms import normalize
from evbattery.models.backbones import classifier_head
from evbattery.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from evbattery.models.classifier import classifier_from_checkpoint
from evbattery.models.novelty import fit_novelty
from evbattery.models.registry import segmenter_path
from evbattery.training import distributed as dist
from evbattery.training.config import TrainConfig, config_differences
from evbattery.training.probe import fit_linear_probe, pooled_features
from evbattery.training.segmenter_cutouts import load_cutout_segmenter, probe_inputs

MEAN, STD = list(IMAGENET_MEAN), list(IMAGENET_STD)
Norm = tuple[list[float], list[float]]  # (mean, std) of the network's input
IMAGENET_NORM: Norm = (MEAN, STD)


def input_norm(cfg: TrainConfig) -> Norm:
    """The normalisation the model trains with: its backbone's (ImageNet's for ResNet-18 and the segmenters,
    [-1, 1] for EfficientNet-Lite), recorded in the checkpoint so every consumer uses the same."""
    from evbattery.models.backbones import backbone_spec

    if cfg.input_type == "masks":
        lite = cfg.segmenter_arch == "unet_efficientnet_lite0"
        return (list(backbone_spec("efficientnet_lite0").mean), list(backbone_spec("efficientnet_lite0").std)) \
            if lite else IMAGENET_NORM
    spec = backbone_spec(cfg.arch)
    return list(spec.mean), list(spec.std)
# Fault-injection for the resume test: seconds to sleep after every training step (0 = off).
STEP_DELAY = float(os.environ.get("EVBATTERY_STEP_DELAY", "0") or 0)


def _logits(out: Any) -> torch.Tensor:
    """Classifier output, or the "out" map of a torchvision segmentation model."""
    return out["out"] if isinstance(out, dict) else out


def _to(t: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """A batch tensor on the device (asynchronous from pinned memory; a no-op when it is already there)."""
    return t if device is None or t.device == device else t.to(device, non_blocking=True)


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
                    epoch: int, fast: bool = True, bf16: bool = False, progress: bool = True,
                    mask_loss_weight: float = 1.0, augment: BatchAugment | None = None,
                    device: torch.device | str | None = None,
                    step_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    log_every: int = 50, norm: Norm = IMAGENET_NORM) -> dict[str, float]:
    """One pass over the training data; returns {"loss", "acc", "img_per_s"} (acc per pixel for masks).

    `augment` augments each batch (with its masks: the segmentation target, or the mask-attention targets)
    when the Dataset was built with batch_augment. `loader` is a DataLoader, or a DeviceBatches whose batches
    already live on `device` (the GPU data path). Loss and accuracy are summed as tensors on the device and
    read once at the end, so a GPU step never waits for the host (the progress bar reads them every
    `log_every` steps on CUDA). `step_scheduler` steps after every optimizer step (onecycle).

    Batches of (x, y, mask) feed a mask-attention classifier: its loss adds mask_loss_weight times the
    attention-vs-mask loss ("mask_loss" in the result, its mean over the epoch).
    """
    from evbattery.models.mask_attention import MaskAttentionOutputs, mask_attention_loss

    device = torch.device(device) if device is not None else next(model.parameters()).device
    cuda = device.type == "cuda"
    model.train()
    zero = torch.zeros((), dtype=torch.float64, device=device)
    loss_sum, correct, mask_sum = zero.clone(), zero.clone(), zero.clone()
    count = n_img = 0
    has_mask_head = False
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False)
    for step, (x, y, *masks) in enumerate(bar):
        x, y, masks = _to(x, device), _to(y, device), [_to(m, device) for m in masks]
        if augment is not None:
            if y.ndim == 3:  # segmentation: the target is the mask
                x, y = augment(x, y)
            else:
                x, m = augment(x, masks[0] if masks else None)
                masks = [m] if masks else masks
        x = normalize(x, *norm)
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, enabled=bf16):
            out = model(x)
        if isinstance(out, MaskAttentionOutputs):
            logits = out.logits
            mask_loss = mask_attention_loss(out.mask_logits, masks[0])
            loss = criterion(logits.float(), y) + mask_loss_weight * mask_loss
            mask_sum += mask_loss.detach() * len(x)
            has_mask_head = True
        else:
            logits = _logits(out)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        loss_sum += loss.detach() * len(x)
        correct += (logits.detach().argmax(1) == y).sum()
        count += y.numel()
        n_img += len(x)
        if progress and (not cuda or step % log_every == 0):
            bar.set_postfix(loss=f"{float(loss_sum) / n_img:.3f}", acc=f"{float(correct) / count:.3f}",
                            img_s=f"{n_img / (time.perf_counter() - t0):.1f}")
        if STEP_DELAY:
            time.sleep(STEP_DELAY)
    loss_f, correct_f, mask_f = float(loss_sum), float(correct), float(mask_sum)  # the epoch's one sync
    loss_f, correct_f, count, n_img, mask_f = dist.all_reduce_sum([loss_f, correct_f, count, n_img, mask_f])
    secs = time.perf_counter() - t0
    out = {"loss": loss_f / max(n_img, 1), "acc": correct_f / max(count, 1), "img_per_s": n_img / secs}
    return {**out, "mask_loss": mask_f / max(n_img, 1)} if has_mask_head else out


def evaluate(model: nn.Module, criterion: nn.Module, loader: Iterable, fast: bool = True,
             bf16: bool = False, device: torch.device | str | None = None,
             norm: Norm = IMAGENET_NORM) -> dict[str, Any]:
    """Loss and accuracy on a loader; classification adds y_true/y_pred/probs, segmentation adds iou.

    Runs on `device` (default: the model's); sums stay on the device until the end."""
    with torch.inference_mode():  # a block, not a decorator, so that mutation testing reaches the body
        device = torch.device(device) if device is not None else next(model.parameters()).device
        model.eval()
        zero = torch.zeros((), dtype=torch.float64, device=device)
        loss_sum, correct, inter, union = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        count = n = 0
        y_true: list[torch.Tensor] = []
        y_pred: list[torch.Tensor] = []
        probs: list[torch.Tensor] = []
        for x, y, *_ in loader:
            x, y = _to(x, device), _to(y, device)
            x = normalize(x, *norm)
            if fast:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, enabled=bf16):
                logits = _logits(model(x)).float()
            loss_sum += criterion(logits, y) * len(x)
            pred = logits.argmax(1)
            correct += (pred == y).sum()
            count += y.numel()
            n += len(x)
            if logits.ndim == 4:  # segmentation: IoU of the cell class over the whole split
                inter += ((pred == 1) & (y == 1)).sum()
                union += ((pred == 1) | (y == 1)).sum()
            else:
                y_true.append(y)
                y_pred.append(pred)
                probs.append(logits.softmax(1))
        inter_f, union_f = float(inter), float(union)
        out: dict[str, Any] = {"loss": float(loss_sum) / max(n, 1), "acc": float(correct) / max(count, 1)}
        if union_f:  # no cell predicted and none there: no IoU to report
            out["iou"] = inter_f / union_f
        if y_true:
            out.update(y_true=torch.cat(y_true).cpu().tolist(), y_pred=torch.cat(y_pred).cpu().tolist(),
                       probs=torch.cat(probs).cpu().numpy())
        return out


def logit_metrics(logits: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
                  device: torch.device | str | None = None) -> dict[str, Any]:
    """What evaluate() reports for a classifier, from logits already computed: loss, acc, y_true, y_pred, probs."""
    logits, y = logits.float().to(device or "cpu"), y.to(device or "cpu")
    pred = logits.argmax(1)
    return {"loss": float(criterion(logits, y)), "acc": float((pred == y).float().mean()),
            "y_true": y.cpu().tolist(), "y_pred": pred.cpu().tolist(), "probs": logits.softmax(1).cpu().numpy()}


def recalibrate_bn(model: nn.Module, train_ds: CachedDataset, limit: int, batch_size: int, fast: bool,
                   images: torch.Tensor | None = None, norm: Norm = IMAGENET_NORM) -> None:
    """Precise BN: recompute BatchNorm running statistics on un-augmented training images.

    The running averages lag weights that move fast early in a from-scratch schedule; measured here,
    a cutout model at epoch 4 predicted one class for every validation image in eval mode (33.3 %)
    and 76.0 % once its statistics were recomputed on 600 training cutouts. Uses the cached,
    un-augmented tensors (the evaluation distribution), a seeded subset of at most `limit` images, on the
    model's device (`images`: the cache already there, e.g. DeviceBatches.images).
    """
    if limit <= 0:
        return
    with torch.no_grad():  # a block, not a decorator, so that mutation testing reaches the body
        net = model.module if hasattr(model, "module") else model
        device = next(net.parameters()).device
        source = images if images is not None else train_ds.images
        n = len(train_ds)
        # Always shuffled: the cache is sorted by class, and update_bn averages per-batch variances, so class-sorted
        # batches would miss the variance between classes (measured: a separable toy set fell to chance in eval mode).
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit]
        idx = idx.to(source.device)  # one copy, not one per batch
        batches = []
        for i in range(0, len(idx), batch_size):
            x = normalize(_to(source[idx[i:i + batch_size]], device), *norm)  # as training does
            batches.append(x.contiguous(memory_format=torch.channels_last) if fast else x)
        torch.optim.swa_utils.update_bn(batches, net)


def load_data(cfg: TrainConfig, device: torch.device | None = None
              ) -> tuple[CachedDataset, CachedDataset, Iterable, Iterable]:
    """Validate and cache the train and val splits (bad files named before the first epoch) and wrap them.

    On CUDA with batch augmentation, both splits go to the GPU once and are served by DeviceBatches (no
    DataLoader, no host copies per step); otherwise by DataLoaders (pinned memory on CUDA). The zoom crop
    exists only per sample, so training with zoom_prob > 0 keeps the DataLoader on every device.
    """
    layout = DatasetLayout(Path(cfg.data_dir))
    swap = cfg.swap_prob if cfg.debias == "bg-swap" else 0.0
    progress = cfg.progress and dist.is_main()
    # a segmenter kept as it is (--train-layers none) trains on nothing: one training photo stands in for the split
    limit = 1 if cfg.train_layers == "none" else cfg.limit_train
    train_ds = CachedDataset(layout, "train", cfg.input_type, cfg.image_size, train=True, limit=limit,
                             swap_prob=swap, seed=cfg.seed, progress=progress, zoom_prob=cfg.zoom_prob,
                             bg_fade=cfg.bg_fade_epochs > 0, mask_targets=cfg.head == "mask_attention",
                             batch_augment=cfg.batch_augment, synth_share=cfg.swap_synth_share)
    val_ds = CachedDataset(layout, "val", cfg.input_type, cfg.image_size, progress=progress)
    if cfg.input_type != "masks":
        check_classes(train_ds)
    if device is not None and is_cuda(device) and cfg.batch_augment:
        from evbattery.data import device_batches

        if device_batches.supports(train_ds):
            train_it = device_batches.DeviceBatches(train_ds, device, cfg.batch_size, shuffle=True,
                                                    drop_last=len(train_ds) > cfg.batch_size, seed=cfg.seed,
                                                    rank=dist.rank(), world_size=dist.world_size())
            val_it = device_batches.DeviceBatches(val_ds, device, cfg.batch_size, shuffle=False, drop_last=False)
            return train_ds, val_ds, train_it, val_it
    sampler = DistributedSampler(train_ds, shuffle=True, seed=cfg.seed) if dist.world_size() > 1 else None
    common = {"batch_size": cfg.batch_size, "num_workers": cfg.workers, "persistent_workers": cfg.workers > 0,
              "pin_memory": device is not None and is_cuda(device)}
    train_loader = DataLoader(train_ds, shuffle=sampler is None, sampler=sampler, drop_last=len(train_ds) > cfg.batch_size,
                              generator=torch.Generator().manual_seed(cfg.seed), **common)
    # Every rank evaluates the whole (small) val split, so metrics need no gathering.
    val_loader = DataLoader(val_ds, shuffle=False, **common)
    return train_ds, val_ds, train_loader, val_loader


def build_model(cfg: TrainConfig, classes: list[str]) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """(model, criterion, meta base) for the task; --pretrained PATH is checked for arch and classes."""
    if cfg.input_type == "masks":
        return build_segmenter_to_train(cfg)
    from evbattery.models.classifier import build_classifier

    if cfg.pretrained not in ("auto", "imagenet", "none"):
        ckpt = load_checkpoint(cfg.pretrained)
        if ckpt["meta"].get("task") == "segmentation":
            # The U-Net's encoder has ResNet-18's layout and names: a segmenter trained on the same photos
            # has learnt where the cell is, which a from-scratch classifier on full frames is slow to find.
            if ckpt["meta"].get("arch") != "unet_resnet18" or cfg.arch != "resnet18":
                raise CheckpointError(f"{cfg.pretrained}: a {ckpt['meta'].get('arch')!r} segmenter; only a "
                                      "unet_resnet18 segmenter's encoder can start a classifier, and only a "
                                      "resnet18 one")
        else:
            check_compatible(ckpt["meta"], cfg.arch, classes, cfg.pretrained)
        # A bare state_dict carries no arch name: its keys must be the backbone's (load is non-strict).
        from evbattery.models.backbones import new_backbone

        own = new_backbone(cfg.arch, len(classes)).state_dict()
        missing = [k for k in own if k not in ckpt["state_dict"] and not k.startswith(("fc.", "classifier."))]
        if missing:
            raise CheckpointError(f"{cfg.pretrained}: not a {cfg.arch} state_dict ({len(missing)} weights "
                                  f"missing, e.g. {missing[0]!r})")
    model, desc = build_classifier(len(classes), cfg.pretrained, cfg.head, cfg.arch)
    if cfg.pretrained not in ("auto", "imagenet", "none") and ckpt["meta"].get("task") == "segmentation":
        desc = f"encoder of the segmenter {cfg.pretrained}"
    return model, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), {"arch": cfg.arch, "head": cfg.head, "task": "classification",
                                          "input_type": cfg.input_type, "classes": classes, "pretrained": desc}


def build_segmenter_to_train(cfg: TrainConfig) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """The segmenter (cfg.segmenter_arch) from scratch (auto | none); from a segmenter checkpoint (PATH) of that
    arch, e.g. one trained at a lower resolution and finished at a higher one; or, for unet_resnet18, with its
    encoder from a ResNet-18 classifier checkpoint (PATH) trained on the same photos. There are no offline
    ImageNet weights for it. u2netp with auto starts from its salient-object weights (models/u2netp.py)."""
    from evbattery.models.segmenter import SegmentationLoss, build_segmenter, segmenter_from_checkpoint

    arch = cfg.segmenter_arch
    meta = {"arch": arch, "task": "segmentation", "input_type": "images", "classes": ["background", "cell"]}
    if arch == "unet_efficientnet_lite0" and cfg.pretrained in ("auto", "imagenet"):
        model = build_segmenter(arch)
        model.load_imagenet_encoder()
        return model, SegmentationLoss(), {**meta, "pretrained": "imagenet encoder"}
    if arch == "u2netp" and cfg.pretrained == "auto":
        from evbattery.models.u2netp import SALIENT_WEIGHTS, load_salient_weights

        return load_salient_weights(build_segmenter(arch)), SegmentationLoss(), {**meta, "pretrained": SALIENT_WEIGHTS}
    if cfg.pretrained in ("auto", "none"):
        return build_segmenter(arch), SegmentationLoss(), {**meta, "pretrained": "none"}
    if cfg.pretrained == "imagenet":
        raise ValueError(f"--pretrained imagenet: no offline ImageNet weights for a {arch} segmenter; use "
                         "--segmenter-arch unet_efficientnet_lite0, or auto | none | a checkpoint PATH")
    ckpt = load_checkpoint(cfg.pretrained)
    if ckpt["meta"].get("task") == "classification":
        if arch != "unet_resnet18" or ckpt["meta"].get("arch") != "resnet18":
            raise CheckpointError(f"{cfg.pretrained}: a {ckpt['meta'].get('arch')!r} classifier can start only a "
                                  "unet_resnet18 segmenter's encoder (--segmenter-arch unet_resnet18)")
        model = build_segmenter(arch)
        try:
            model.load_encoder(ckpt["state_dict"])
        except ValueError as e:
            raise CheckpointError(f"{cfg.pretrained}: {e}") from e
        return model, SegmentationLoss(), {**meta, "pretrained": f"encoder from {cfg.pretrained}"}
    if ckpt["meta"].get("task") == "segmentation" and ckpt["meta"].get("arch") != arch:
        raise CheckpointError(f"{cfg.pretrained}: a {ckpt['meta'].get('arch')} segmenter, but --segmenter-arch is "
                              f"{arch}")
    model = segmenter_from_checkpoint(ckpt, cfg.pretrained).train()
    return model, SegmentationLoss(), {**meta, "pretrained": cfg.pretrained}


def check_compatible(meta: dict[str, Any], arch: str, classes: list[str], source: str) -> None:
    """A checkpoint used to start or resume training must have our architecture and class list."""
    if meta.get("arch", arch) != arch:
        raise CheckpointError(f"{source}: architecture {meta.get('arch')!r} does not match {arch!r}")
    if meta.get("classes") and list(meta["classes"]) != list(classes):
        raise CheckpointError(f"{source}: classes {meta['classes']} do not match the dataset's {classes}")


def make_optimizer(model: nn.Module, lr: float, kind: str = "adam", weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam or AdamW with the fused kernel, on CPU and CUDA alike (one pass over all parameters; on the CPU
    measured 79.3 -> 84.6 and 95.3 -> 97.5 img/s at batch 32, 128 px: a small gain, near this machine's
    run-to-run noise; on a GPU it replaces hundreds of small kernels per step by a few)."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    return cls(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """LR schedule: per epoch, cosine to 0 over the run or x0.1 every third of it; per step, onecycle
    (warm-up over warmup_pct of the steps to the lr, then cosine annealing to ~0)."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.effective_lr,
                                                   total_steps=max(1, cfg.epochs * steps_per_epoch),
                                                   pct_start=cfg.warmup_pct, cycle_momentum=False)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(cfg.epochs / 3)), gamma=0.1)


def _paths(cfg: TrainConfig) -> tuple[Path, Path]:
    """(best checkpoint, last checkpoint) paths."""
    d, name = Path(cfg.model_dir), cfg.model_name
    best = d / (SEGMENTER_FILE if cfg.input_type == "masks" and not cfg.name else checkpoint_name(name))
    return best, d / f"last_{name}.pth"


def to_cpu(obj: Any) -> Any:
    """A state (nested dicts / lists of tensors) with every tensor copied to the CPU: checkpoints written on a
    GPU load anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def _clean(m: dict[str, Any]) -> dict[str, Any]:
    """Plain-typed metrics (no arrays / prediction lists) for checkpoints and logs."""
    return {k: v for k, v in m.items() if k not in ("y_true", "y_pred", "probs")}


class TrainingDiverged(RuntimeError):
    """No epoch of a run had a finite validation loss, so it has no best checkpoint."""


def main(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model; returns {"checkpoint", "best_epoch", "val", "run_dir", "start_epoch", "history"}."""
    device = resolve_device(cfg.device)  # cuda:LOCAL_RANK under torchrun; DeviceError before any work
    distributed = dist.init_distributed(device)
    torch.manual_seed(cfg.seed)
    main_proc = dist.is_main()
    bf16 = cfg.fast and bf16_supported(device)
    if is_cuda(device):
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    train_ds, val_ds, train_loader, val_loader = load_data(cfg, device)
    classes = list(train_ds.classes)
    model, criterion, meta_base = build_model(cfg, classes)
    probe = cfg.train_layers == "head"
    frozen = cfg.train_layers == "none"  # a pretrained segmenter kept as it is: one val pass scores it
    if probe and meta_base["pretrained"].startswith("none"):
        raise CheckpointError(f"--train-layers head: no pretrained weights for {cfg.arch} "
                              f"({meta_base['pretrained']}); a probe on random features learns nothing")
    segmenter = None  # what cuts a cutout probe's training cutouts, when not the dataset's true masks
    if probe:
        if cfg.cutout_masks != "true":
            segmenter = load_cutout_segmenter(Path(cfg.cutout_segmenter or segmenter_path(cfg.model_dir)), device)
        probe_train, probe_val = (probe_inputs(ds, cfg.cutout_masks, segmenter, cfg.progress and main_proc)
                                  for ds in (train_ds, val_ds))
    model, criterion = model.to(device), criterion.to(device)
    norm = input_norm(cfg)
    if cfg.fast:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.effective_lr, cfg.optimizer, cfg.weight_decay)
    per_step = cfg.scheduler == "onecycle"
    scheduler = make_scheduler(cfg, optimizer, len(train_loader))
    augment = BatchAugment("cutouts" if cfg.input_type == "cutouts" else "images") if cfg.batch_augment else None
    best_path, last_path = _paths(cfg)
    layout = DatasetLayout(Path(cfg.data_dir))
    start_epoch, best_loss, best_epoch, history, run_id = 0, math.inf, -1, [], new_run_id(cfg.model_name)
    best_metrics: dict[str, Any] = {}
    novelty = None  # a probe's novelty score (models/novelty.py); fine-tuned models get theirs after training
    if cfg.resume:
        if not last_path.is_file():
            raise CheckpointError(f"--resume: no {last_path} to resume from (train without --resume first)")
        last = load_checkpoint(last_path)
        check_compatible(last["meta"], meta_base["arch"], meta_base["classes"], str(last_path))
        diff = config_differences(last["meta"].get("config", {}), cfg)
        if diff:
            raise ValueError(f"--resume: {last_path} was trained with a different config: " + "; ".join(diff))
        model.load_state_dict(last["state_dict"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        torch.set_rng_state(last["rng"])
        start_epoch, best_loss, best_epoch = last["epoch"] + 1, last["best_loss"], last["best_epoch"]
        history, run_id, best_metrics = list(last["history"]), last["run_id"], dict(last["meta"].get("metrics", {}))
    run_id = dist.broadcast_object(run_id)  # one run id for all ranks (rank 0's)
    model = dist.wrap_model(model)
    net = dist.unwrap(model)  # the plain module: its state_dict has no DDP / compile prefixes
    if cfg.compile:
        model = torch.compile(model)
    cached = getattr(train_loader, "images", None)  # the training cache on the device (DeviceBatches)
    config = cfg.as_dict()
    meta = {"name": cfg.model_name, **meta_base, "image_size": cfg.image_size, "mean": norm[0], "std": norm[1],
            "config": config, "dataset_fingerprint": layout.fingerprint(), "dataset_root": str(layout.root),
            "debias": {"method": cfg.debias, "swap_prob": cfg.swap_prob, "synth_share": cfg.swap_synth_share}
            if cfg.debias else None}
    if segmenter is not None:  # which segmenter cut the training cutouts
        meta["cutout_masks"] = {"mode": cfg.cutout_masks, "segmenter": segmenter.source,
                                "segmenter_created": segmenter.meta.get("created")}
    tracker = None
    if main_proc:
        tracker = Tracker(cfg.runs_dir, run_id, {**config, "pretrained_weights": meta["pretrained"],
                                                 "dataset_fingerprint": meta["dataset_fingerprint"],
                                                 "world_size": dist.world_size(), "bf16": bf16},
                          backend=cfg.tracker, project=cfg.wandb_project, job_type="train")
    try:
        for epoch in range(start_epoch, 1 if probe or frozen else cfg.epochs):  # a probe is one pass
            if isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
                train_loader.sampler.set_epoch(epoch)
            elif hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            if cfg.bg_fade_epochs:
                train_ds.set_bg_alpha(fade_alpha(epoch, cfg.bg_fade_epochs))
            if probe:
                tr = fit_linear_probe(net, classifier_head(net, cfg.arch), *probe_train, *probe_val, norm,
                                      cfg.probe_c, device=device, bf16=bf16,
                                      progress=cfg.progress and main_proc, seed=cfg.seed,
                                      shift_copies=cfg.probe_shift_copies)
                novelty, meta["novelty"] = tr.pop("novelty"), tr.pop("novelty_meta")
            elif frozen:
                tr = {}  # nothing was trained: the history and the table show val only
            else:
                tr = train_one_epoch(model, criterion, optimizer, train_loader, epoch, cfg.fast, bf16,
                                     cfg.progress and main_proc, cfg.mask_loss_weight, augment, device=device,
                                     step_scheduler=scheduler if per_step else None, norm=norm)
                if not per_step:
                    scheduler.step()
                recalibrate_bn(net, train_ds, cfg.precise_bn, cfg.batch_size, cfg.fast, images=cached, norm=norm)
            if probe:  # the probe's own val logits: the val photos went through the network once already
                va = logit_metrics(torch.from_numpy(tr.pop("val_logits")[:len(val_ds)]), val_ds.labels, criterion,
                                   device)
            else:
                va = evaluate(model, criterion, val_loader, cfg.fast, bf16, device=device, norm=norm)
            if "y_true" in va:
                from evbattery.core.metrics import classification_metrics

                cm = classification_metrics(va["y_true"], va["y_pred"], va["probs"], classes)
                va.update(balanced_accuracy=cm["balanced_accuracy"], macro_f1=cm["macro_f1"], ece=cm["ece"])
            row = {"epoch": epoch, "lr": lr, **({"bg_alpha": float(train_ds.bg_alpha)} if cfg.bg_fade_epochs else {}),
                   **{f"train/{k}": v for k, v in tr.items()},
                   **{f"val/{k}": v for k, v in _clean(va).items()}}
            history.append(row)
            improved = va["loss"] < best_loss
            if improved:
                best_loss, best_epoch, best_metrics = va["loss"], epoch, _clean(va)
            if main_proc:
                tracker.log(row, step=epoch)
                state = net.state_dict()  # save_checkpoint copies it to the CPU
                full_meta = {**meta, "best_epoch": best_epoch, "metrics": best_metrics}
                if improved:
                    save_checkpoint(best_path, state, full_meta, **({"novelty": novelty.state()} if novelty else {}))
                save_checkpoint(last_path, state, full_meta, optimizer=to_cpu(optimizer.state_dict()),
                                scheduler=scheduler.state_dict(), epoch=epoch, rng=torch.get_rng_state(),
                                best_loss=best_loss, best_epoch=best_epoch, history=history, run_id=run_id)
            dist.barrier()
        if best_epoch < 0:  # every val loss was NaN or inf: there is no best model to hand on
            raise TrainingDiverged(f"{cfg.model_name}: no epoch had a finite validation loss (the run diverged; "
                                   f"try a lower --lr), so no {best_path.name} was written; the last state is "
                                   f"in {last_path}")
        result = {"checkpoint": str(best_path), "best_epoch": best_epoch, "val": best_metrics,
                  "run_dir": str(Path(cfg.runs_dir) / run_id), "start_epoch": start_epoch, "history": history}
        if main_proc:
            if not probe and cfg.input_type != "masks":  # a probe fitted its novelty score on its own features
                fit_checkpoint_novelty(best_path, train_ds, val_ds, norm, device, bf16, cfg.progress, cfg.seed)
            _finish(cfg, tracker, best_path, val_ds, val_loader, criterion, classes, result, device)
        return result
    finally:
        if tracker is not None:
            tracker.finish()
        if distributed:
            dist.cleanup()


NOVELTY_MAX_TRAIN = 3000  # training photos the novelty score of a fine-tuned model is fitted on (a random subset)


def fit_checkpoint_novelty(path: Path, train_ds: CachedDataset, val_ds: CachedDataset,
                           norm: tuple[list[float], list[float]], device: torch.device | None, bf16: bool,
                           progress: bool, seed: int) -> None:
    """Fit the novelty score (models/novelty.py) of a trained classifier on its pooled features of the training
    photos (at most NOVELTY_MAX_TRAIN) and the val photos, and write it into the checkpoint."""
    ckpt = load_checkpoint(path)
    model = classifier_from_checkpoint(ckpt, str(path)).to(device or "cpu")
    head = classifier_head(model, ckpt["meta"].get("arch", "resnet18"))
    idx = torch.randperm(len(train_ds.images), generator=torch.Generator().manual_seed(seed))[:NOVELTY_MAX_TRAIN]
    f_train = pooled_features(model, head, train_ds.images[idx], norm, device=device, bf16=bf16, progress=progress,
                              desc="novelty train")
    f_val = pooled_features(model, head, val_ds.images, norm, device=device, bf16=bf16, progress=progress,
                            desc="novelty val")
    score, meta = fit_novelty(f_train, train_ds.labels[idx].numpy(), f_val)
    save_checkpoint(path, ckpt["state_dict"], {**ckpt["meta"], "novelty": meta},
                    **({"novelty": score.state()} if score else {}))


def _finish(cfg: TrainConfig, tracker: Tracker, best_path: Path, val_ds: CachedDataset, val_loader: Iterable,
            criterion: nn.Module, classes: list[str], result: dict[str, Any], device: torch.device | None = None) -> None:
    """Final per-class metrics and sample predictions of the best model to the tracker; the summary table."""
    from evbattery.core.console import table

    tracker.summary(_clean({k: v for k, v in result.items() if k != "history"}))
    if cfg.input_type != "masks" and best_path.is_file() and tracker.run is not None:
        from evbattery.core.metrics import classification_metrics
        from evbattery.models.classifier import load_classifier

        model, _ = load_classifier(best_path)
        va = evaluate(model.to(device or "cpu"), criterion, val_loader, fast=False, norm=input_norm(cfg))
        cm = classification_metrics(va["y_true"], va["y_pred"], va["probs"], classes)
        samples = [(val_ds.images[i].permute(1, 2, 0).numpy(), va["y_true"][i], va["y_pred"][i],
                    float(va["probs"][i].max())) for i in range(min(16, len(val_ds)))]
        tracker.log_classification("val", va["y_true"], va["y_pred"], classes, cm["per_class"], samples)
    if cfg.progress:
        trained = cfg.train_layers != "none"
        keys = (["train/loss", "train/acc"] if trained else []) + ["val/loss", "val/acc"] + (
            ["val/iou"] if cfg.input_type == "masks" else []) + (["train/img_per_s"] if trained else [])
        rows = [[r["epoch"], *[r.get(k, float("nan")) for k in keys]] for r in result["history"]]
        table(f"{cfg.model_name}: best epoch {result['best_epoch']} -> {best_path}",
              ["epoch", *[k.replace("train/img_per_s", "img/s") for k in keys]], rows, to_stderr=True)

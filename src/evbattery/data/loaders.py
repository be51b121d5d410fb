"""Training data: a Dataset that decodes each file once into a uint8 cache, train-only augmentation,
and the bg-swap (background-randomised training, Xiao et al. 2020) for the debiased model.

The cache holds `resize_uint8` output (the Predictor's preprocessing) as one (N,3,S,S) uint8 tensor,
built in the main process before DataLoader workers fork, so workers share it without copying.
Normalisation happens on the batch in the training loop (data.transforms.normalize).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from evbattery.core.config import CUTOUT_FILL, MASK_THRESHOLD
from evbattery.core.imageio import ImageDecodeError, ImageTooLargeError, load_mask, load_rgb
from evbattery.data import variants
from evbattery.data.layout import DatasetError, DatasetLayout, Sample
from evbattery.data.transforms import pad_fill, resize_mask, resize_uint8

log = logging.getLogger(__name__)

# Default fraction of swaps that use a freshly generated synthetic background instead of another photo.
SYNTH_SWAP_SHARE = 0.25


def augmentation(kind: str) -> v2.Transform:
    """Train-only augmentation that keeps the cell in view: flips, small rotation, mild scale, colour.

    No translation or crop, so a small off-centre cell never leaves the frame. Cutouts get no contrast
    jitter, which would lift their black fill (the cutout model must see the fill it is served).
    """
    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomAffine(degrees=15, scale=(0.9, 1.1)),
        v2.ColorJitter(brightness=0.2, contrast=0.0 if kind == "cutouts" else 0.2, saturation=0.2, hue=0.02),
    ])


def fade_background(img: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """3xSxS uint8 photo -> the same with its background blended toward the cutout fill.

    alpha 1 is the photo, alpha 0 its cutout (exactly `make_cutout`'s pixels); cell pixels never change.
    """
    if alpha >= 1.0:
        return img
    fill = torch.tensor(CUTOUT_FILL, dtype=torch.float32)[:, None, None]
    faded = (alpha * img.float() + (1.0 - alpha) * fill).round().clamp(0, 255).to(torch.uint8)
    return torch.where((mask >= MASK_THRESHOLD)[None], img, faded)


def fade_alpha(epoch: int, fade_epochs: int) -> float:
    """Background weight in epoch `epoch` (0-based) of a fade over `fade_epochs`: (e+1)/(N+1), then 1."""
    return 1.0 if epoch >= fade_epochs else (epoch + 1) / (fade_epochs + 1)


def _synth_backgrounds():
    """The synthetic background renderer and its families (for bg-swap onto fresh backgrounds)."""
    from evbattery.data.synth.backgrounds import FAMILIES, render_background

    return render_background, list(FAMILIES)


@dataclass
class SwapInfo:
    """What a bg-swap did to one sample (for tests and debugging)."""

    source: str          # "photo" | "synthetic" | "none"
    partner: int | None  # index of the background photo
    family: str | None   # synthetic background family


class CachedDataset(Dataset):
    """One split of the dataset, decoded once. Items: (3xSxS uint8, label) or, with masks, (image, mask);
    with mask_targets, (image, label, 0/1 mask) with the mask following every geometric augmentation.
    Training items are augmented here per sample, or left for the loop's BatchAugment with batch_augment.

    kind: "images" | "cutouts" (classification) or "masks" (segmentation: image -> 0/1 mask).
    """

    def __init__(self, layout: DatasetLayout, split: str, kind: str, image_size: int, train: bool = False,
                 limit: int | None = None, swap_prob: float = 0.0, seed: int = 0, progress: bool = False,
                 zoom_prob: float = 0.0, bg_fade: bool = False, mask_targets: bool = False,
                 batch_augment: bool = False, synth_share: float = SYNTH_SWAP_SHARE) -> None:
        self.layout, self.split, self.kind, self.size, self.train = layout, split, kind, image_size, train
        self.classes = list(layout.classes)
        samples = layout.require_split(split)
        if limit is not None and limit < len(samples):
            # A random subset (every class stays likely present), deterministic for the seed.
            idx = np.random.default_rng(seed).permutation(len(samples))[:limit]
            samples = [samples[i] for i in sorted(idx)]
        self.samples: list[Sample] = samples
        self.swap_prob = swap_prob if train else 0.0
        self.synth_share = synth_share
        self.zoom_prob = zoom_prob if train and kind != "masks" else 0.0
        self.bg_fade = bg_fade and train and kind == "images"
        self.mask_targets = mask_targets and kind != "masks"
        need_masks = kind == "masks" or self.swap_prob > 0 or self.zoom_prob > 0 or self.bg_fade or self.mask_targets
        self.images, self.masks = self._build_cache(need_masks, progress)
        self.boxes = cell_boxes(self.masks) if self.zoom_prob > 0 else None
        self.labels = torch.tensor([self.classes.index(s.cls) for s in samples], dtype=torch.long)
        self.by_class = [np.nonzero(self.labels.numpy() == c)[0] for c in range(len(self.classes))]
        # With batch_augment the training loop augments whole batches (data.augment.BatchAugment) instead.
        self.transform = augmentation(kind) if train and not batch_augment else None
        self.synth = _synth_backgrounds() if self.swap_prob > 0 else None
        # Background weight of the fade (see fade_background); shared memory so DataLoader workers see updates.
        self.bg_alpha = torch.ones(()).share_memory_()

    def set_bg_alpha(self, alpha: float) -> None:
        if not self.bg_fade and alpha < 1.0:
            raise ValueError("this dataset was built without bg_fade")
        self.bg_alpha.fill_(alpha)

    def _build_cache(self, need_masks: bool, progress: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode every file once; every unreadable image or missing mask is named before training.

        Big splits decode on a thread pool (PIL's decoders and torch's resize release the GIL): 24,000 photos
        at 224 px took ~40 s in one thread, a cost every training run of a GPU sweep would pay.
        """
        n, s = len(self.samples), self.size
        images = torch.empty((n, 3, s, s), dtype=torch.uint8)
        masks = torch.empty((n, s, s), dtype=torch.uint8) if need_masks else None
        src_kind = "images" if self.kind == "masks" else self.kind
        fill = pad_fill(src_kind)

        def decode(i: int) -> str | None:
            smp = self.samples[i]
            if not smp.mask.is_file():
                return f"{smp.mask}: missing mask"
            try:
                images[i] = resize_uint8(load_rgb(smp.path(src_kind)), s, fill)
                if masks is not None:
                    masks[i] = resize_mask(load_mask(smp.mask), s)
            except FileNotFoundError as e:
                return f"{e.filename or smp.path(src_kind)}: missing file"
            except (ImageDecodeError, ImageTooLargeError) as e:
                return str(e)
            return None

        threads = decode_threads(n)
        bar = tqdm(total=n, desc=f"decode {self.split}/{src_kind}", unit="img", disable=not progress, leave=False)
        if threads <= 1:
            results = []
            for i in range(n):
                results.append(decode(i))
                bar.update()
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                results = []
                for r in pool.map(decode, range(n), chunksize=64):
                    results.append(r)
                    bar.update()
        bar.close()
        bad = [r for r in results if r is not None]
        if bad:
            more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
            raise DatasetError(f"{len(bad)} unusable file(s) in split {self.split!r}: " + "; ".join(bad[:10]) + more)
        return images, masks

    def __len__(self) -> int:
        return len(self.samples)

    # -- bg-swap ------------------------------------------------------------------------------
    def swapped(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, SwapInfo]:
        """Sample i with its cell (through its training mask, same position) on another background.

        The background is another training photo of a random class, with its own cell's box filled as
        in Only-BG-T (no cell-shaped hole), or now and then a freshly rendered synthetic background.
        Cell pixels are kept exactly; only background pixels change.
        """
        assert self.masks is not None, "bg-swap needs masks in the cache"
        image = self.images[i].permute(1, 2, 0).numpy()   # (S,S,3) uint8 view
        mask = self.masks[i].numpy()
        if self.synth is not None and rng.random() < self.synth_share:
            render, families = self.synth
            family = str(rng.choice(families))
            bg = np.asarray(render(family, self.size, rng), dtype=np.uint8)[: self.size, : self.size, :3]
            return variants.paste(image, mask, np.ascontiguousarray(bg)), SwapInfo("synthetic", None, family)
        pool = self.by_class[int(rng.integers(len(self.by_class)))]
        j = int(rng.choice(pool)) if len(pool) else i
        if j == i and len(self) > 1:
            j = (i + 1) % len(self)
        bg_image = self.images[j].permute(1, 2, 0).numpy()
        return variants.mixed(image, mask, bg_image, self.masks[j].numpy()), SwapInfo("photo", j, None)

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.swap_prob > 0:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))  # torch seeds each worker
            if rng.random() < self.swap_prob:
                img = torch.from_numpy(self.swapped(i, rng)[0]).permute(2, 0, 1).contiguous()
        if self.bg_fade and float(self.bg_alpha) < 1.0:
            img = fade_background(img, self.masks[i], float(self.bg_alpha))
        with_mask = self.kind == "masks" or self.mask_targets
        mask = self.masks[i] if with_mask else None
        if self.boxes is not None and torch.rand(()) < self.zoom_prob:
            img, mask = zoom_to_cell(img, self.boxes[i], mask=mask)
        if with_mask:
            mask = tv_tensors.Mask(mask[None])
            if self.transform is not None:
                img, mask = self.transform(tv_tensors.Image(img), mask)
            img, mask = torch.as_tensor(img), (torch.as_tensor(mask)[0] >= 128).long()
            return (img, mask) if self.kind == "masks" else (img, self.labels[i], mask)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[i]


def decode_threads(n: int) -> int:
    """Threads that decode a split of n files into the cache: one for small splits, else the usable cores (at
    most 16)."""
    if n < 512:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores))


def cell_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N,S,S) uint8 masks -> (N,4) int boxes y0,y1,x0,x1 of the cell (the whole frame for an empty mask)."""
    n, s, _ = masks.shape
    boxes = torch.tensor([[0, s, 0, s]] * n, dtype=torch.long)
    for i in range(n):
        box = variants.bounding_box(masks[i].numpy())
        if box is not None:
            boxes[i] = torch.tensor(box)
    return boxes


def zoom_window(box: torch.Tensor, s: int, margin: float = 0.15) -> tuple[int, int, int] | None:
    """A random square window (top, left, side) of an SxS frame that still holds the cell box plus a
    margin; None when the drawn side is the whole frame."""
    y0, y1, x0, x1 = (int(v) for v in box)
    pad = max(2, int(margin * max(y1 - y0, x1 - x0)))
    y0, y1, x0, x1 = max(0, y0 - pad), min(s, y1 + pad), max(0, x0 - pad), min(s, x1 + pad)
    side = int(torch.randint(max(y1 - y0, x1 - x0), s + 1, ()))
    if side >= s:
        return None
    # Top-left corner such that [top, top+side) covers [y0, y1) and stays inside the frame.
    top = int(torch.randint(max(0, y1 - side), min(y0, s - side) + 1, ()))
    left = int(torch.randint(max(0, x1 - side), min(x0, s - side) + 1, ()))
    return top, left, side


def zoom_to_cell(img: torch.Tensor, box: torch.Tensor, margin: float = 0.15,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Object-preserving scale augmentation: a random square crop that still holds the whole cell box
    (plus a margin), resized back to the input size -> (image, mask cropped the same way or None).

    Small cells (mean ~8 % of the frame) give a from-scratch CNN a weak signal; seeing them larger in
    some training views helps it learn their shape, while evaluation keeps the full frame. The crop
    side is drawn between the padded cell box and the full frame, so the cell never leaves view.
    """
    s = img.shape[-1]
    window = zoom_window(box, s, margin)
    if window is None:
        return img, mask
    top, left, side = window
    out = F.resize(img[:, top:top + side, left:left + side], [s, s],
                   interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    if mask is not None:
        mask = F.resize(mask[None, top:top + side, left:left + side], [s, s],
                        interpolation=F.InterpolationMode.NEAREST)[0].contiguous()
    return out, mask


def check_classes(ds: CachedDataset) -> None:
    """A classifier needs at least two classes with images in the split."""
    present = [c for c, idx in zip(ds.classes, ds.by_class, strict=True) if len(idx)]
    if len(present) < 2:
        raise DatasetError(f"split {ds.split!r} of {ds.layout.root} has images of only {present or 'no'} "
                           f"class(es); a classifier needs at least two of {ds.classes}")

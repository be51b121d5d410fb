"""Training batches drawn from uint8 tensors that live on the training device (the GPU data path).

`CachedDataset` decodes a split once into (N,3,S,S) uint8. On a GPU a DataLoader would then copy every batch
from the host, collate it in Python and run the per-sample bg-swap in numpy: the GPU waits on the host.
`DeviceBatches` instead moves the cache to the device once (24,000 photos at 224 px are 3.6 GB; an H200
holds 139 GB) and, per step, indexes it with a slice of a permutation that is itself on the device, so a
step launches a handful of kernels and never waits for the host, nor the host for it.

What `CachedDataset.__getitem__` does per sample is done here per batch, on the device:
  bg-swap    the cell (through its mask, same position) onto another training photo's Only-BG-T background
             (precomputed once per photo, `variants.only_bg_t`, the same function the per-sample swap uses),
             or, for a `synth_share` of the swaps, onto a synthetic background from a bank rendered once
             (`bank` backgrounds, where the per-sample path renders a fresh one each time);
  bg fade    background blended toward the cutout fill by the dataset's current alpha;
  masks      0/1 long masks (segmentation targets, mask-attention targets).
The partner photo is drawn as the per-sample path draws it: a random class, then a random photo of it, never
the photo itself. The zoom crop is not implemented here: training with zoom_prob > 0 uses the DataLoader.

Under DDP every rank draws the same seeded permutation per epoch and takes its own stride of it.
"""

from __future__ import annotations

import numpy as np
import torch

from evbattery.core.config import CUTOUT_FILL, MASK_THRESHOLD
from evbattery.data import variants
from evbattery.data.loaders import CachedDataset

SYNTH_BANK = 512  # synthetic backgrounds rendered once for the device bg-swap (~6 ms each at 224 px)


def supports(ds: CachedDataset) -> bool:
    """Whether the device path can reproduce this dataset's per-sample work (everything but the zoom crop)."""
    return ds.zoom_prob == 0 and ds.transform is None


class DeviceBatches:
    """An iterable of (x uint8 (B,3,S,S), y, [mask]) batches on `device`, like a DataLoader over the dataset."""

    def __init__(self, ds: CachedDataset, device: torch.device | str, batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 bank: int = SYNTH_BANK) -> None:
        if not supports(ds):
            raise ValueError("DeviceBatches: the dataset needs per-sample work (zoom crop or torchvision "
                             "augmentation) that only the DataLoader path does")
        self.ds, self.device = ds, torch.device(device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        dev = self.device
        self.images = ds.images.to(dev)
        self.labels = ds.labels.to(dev)
        self.is_seg = ds.kind == "masks"
        self.with_mask = self.is_seg or ds.mask_targets
        self.masks = ds.masks.to(dev) if ds.masks is not None else None
        self.swap_prob = ds.swap_prob
        self.synth_share = ds.synth_share if ds.synth is not None else 0.0
        self.bg_t = self.bank = None
        if self.swap_prob > 0:
            self.bg_t = self._only_bg_t().to(dev)
            if self.synth_share > 0:
                self.bank = self._synth_bank(bank).to(dev)
            # Partner draw tables: class c's photo indices (padded), and how many there are.
            by_class = [torch.as_tensor(ix, dtype=torch.long) for ix in ds.by_class]
            width = max(1, max(len(ix) for ix in by_class))
            table = torch.zeros(len(by_class), width, dtype=torch.long)
            for c, ix in enumerate(by_class):
                table[c, :len(ix)] = ix
            counts = torch.tensor([len(ix) for ix in by_class], dtype=torch.long)
            # Classes without photos are never drawn (the per-sample path falls back to the photo itself).
            self.classes_present = torch.nonzero(counts > 0).flatten().to(dev)
            self.table, self.counts = table.to(dev), counts.to(dev)
        self.fill = torch.tensor(CUTOUT_FILL, dtype=torch.float32).view(1, 3, 1, 1).to(dev)
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(seed)

    # -- set-up ---------------------------------------------------------------------------------
    def _only_bg_t(self) -> torch.Tensor:
        """Every photo's Only-BG-T background (its cell box tiled over), as the per-sample swap makes it."""
        ds = self.ds
        out = torch.empty_like(ds.images)
        for i in range(len(ds)):
            img = ds.images[i].permute(1, 2, 0).numpy()
            out[i] = torch.from_numpy(variants.only_bg_t(img, ds.masks[i].numpy())).permute(2, 0, 1)
        return out

    def _synth_bank(self, n: int) -> torch.Tensor:
        """n synthetic backgrounds of the dataset's size, each of a random family (seeded)."""
        render, families = self.ds.synth
        rng = np.random.default_rng([self.seed, 7])
        s = self.ds.size
        bank = torch.empty((n, 3, s, s), dtype=torch.uint8)
        for k in range(n):
            bg = np.asarray(render(str(rng.choice(families)), s, rng), dtype=np.uint8)[:s, :s, :3]
            bank[k] = torch.from_numpy(np.ascontiguousarray(bg)).permute(2, 0, 1)
        return bank

    # -- iteration ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The epoch's permutation (same on every rank) and random stream."""
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.ds)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        perm = perm[self.rank::self.world_size]
        if self.drop_last and len(perm) > self.batch_size:
            perm = perm[: len(perm) // self.batch_size * self.batch_size]
        return perm.to(self.device)  # one copy per epoch

    def __len__(self) -> int:
        n = len(range(self.rank, len(self.ds), self.world_size))
        if self.drop_last and n > self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self):
        self.generator.manual_seed(self.seed * 100_003 + self.epoch + 1)
        idx_all = self._indices()
        for start in range(0, len(idx_all), self.batch_size):
            yield self.batch(idx_all[start:start + self.batch_size])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch of dataset indices idx (on the device), with bg-swap / fade / masks applied."""
        x = self.images[idx]
        m = self.masks[idx] if self.masks is not None else None
        if self.swap_prob > 0:
            x = self._swap(idx, x, m)
        alpha = float(self.ds.bg_alpha)  # a CPU scalar the loop sets per epoch (no device sync)
        if self.ds.bg_fade and alpha < 1.0:
            cell = (m >= MASK_THRESHOLD)[:, None]
            faded = (alpha * x.float() + (1.0 - alpha) * self.fill).round_().clamp_(0, 255).to(torch.uint8)
            x = torch.where(cell, x, faded)
        if self.is_seg:
            return x, (m >= MASK_THRESHOLD).long()
        if self.with_mask:
            return x, self.labels[idx], (m >= MASK_THRESHOLD).long()
        return x, self.labels[idx]

    def _swap(self, idx: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        b, g, dev = len(idx), self.generator, self.device
        do = torch.rand(b, generator=g, device=dev) < self.swap_prob
        cls = self.classes_present[torch.randint(len(self.classes_present), (b,), generator=g, device=dev)]
        pick = torch.randint(1 << 30, (b,), generator=g, device=dev) % self.counts[cls]
        j = self.table[cls, pick]
        n = len(self.ds)
        j = torch.where((j == idx) & (n > 1), (idx + 1) % n, j)
        bg = self.bg_t[j]
        if self.bank is not None:
            synth = torch.rand(b, generator=g, device=dev) < self.synth_share
            k = torch.randint(len(self.bank), (b,), generator=g, device=dev)
            bg = torch.where(synth[:, None, None, None], self.bank[k], bg)
        cell = (m >= MASK_THRESHOLD)[:, None]
        return torch.where(do[:, None, None, None] & ~cell, bg, x)

"""Dynamic batching for the API: one inference thread runs concurrent requests as batches.

Request threads decode and resize their own upload, then submit the prepared uint8 tensor here and
wait. The inference thread takes whatever is queued the moment it is free (up to `max_batch`) and
runs each model once on the stacked inputs. A lone request runs at once; under load, requests pile
up while the previous batch runs and form the next one. Nothing waits for a batch to fill.

One thread for every model, on purpose: each forward pass already uses every core, so two at once
only fight over them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from evbattery.inference.predictor import Predictor

OnBatch = Callable[[str, int, float], None]  # (model name, batch size, seconds)


@dataclass
class _Item:
    predictor: Predictor
    x: torch.Tensor  # (3, S, S) uint8
    future: Future = field(default_factory=Future)


class BatchRunner:
    """A queue and one daemon thread that runs queued inputs in per-model batches."""

    def __init__(self, max_batch: int = 16, on_batch: OnBatch | None = None, autostart: bool = True) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._autostart = autostart  # False: inputs queue up until start() (warm-up, tests)

    def submit(self, predictor: Predictor, x: torch.Tensor) -> Future:
        """Queue one prepared (3,S,S) uint8 input; the Future resolves to its (C,) float32 logits."""
        if self._closed:
            raise RuntimeError("BatchRunner is closed")
        if self._autostart:
            self.start()
        item = _Item(predictor, x)
        self._queue.put(item)
        return item.future

    def logits(self, predictor: Predictor, x: torch.Tensor, timeout: float | None = None) -> np.ndarray:
        """Submit and wait: the logits of one input, computed in whatever batch it joined."""
        return self.submit(predictor, x).result(timeout=timeout)

    def start(self) -> None:
        """Start the inference thread (submit does this on first use)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="evbattery-batcher", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _take(self) -> tuple[list[_Item], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        items, stop = [first], False
        while len(items) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            items.append(nxt)
        return items, stop

    def _loop(self) -> None:
        while True:
            items, stop = self._take()
            groups: dict[int, list[_Item]] = {}
            for it in items:
                groups.setdefault(id(it.predictor), []).append(it)
            for group in groups.values():
                self._run(group)
            if stop:
                return

    def _run(self, group: list[_Item]) -> None:
        pred = group[0].predictor
        t0 = time.perf_counter()
        try:
            out = pred.logits(torch.stack([it.x for it in group]))
        except Exception as e:  # every waiter gets the error; the thread lives on
            for it in group:
                it.future.set_exception(e)
            return
        for it, row in zip(group, out, strict=True):
            it.future.set_result(row)
        if self.on_batch is not None:
            self.on_batch(pred.name, len(group), time.perf_counter() - t0)

"""Dynamic batching for the API: one inference thread per model runs concurrent requests as batches.

Request threads decode and resize their own upload, then submit the prepared uint8 tensor here and
wait. Each model has a lane (a queue and a thread); the lane takes whatever is queued the moment it
is free (up to `max_batch`) and runs the model once on the stacked inputs. A lone request runs at
once; under load, requests pile up while the previous batch runs and form the next one. Nothing
waits for a batch to fill.

Each batch runs on its Predictor's device (`Predictor.outputs` moves the stacked uint8 inputs there and brings
the logits and novelty back), so on a GPU a lane is one host thread feeding the GPU whole batches; the API then wants
a larger EVBATTERY_MAX_BATCH. On the CPU, lanes of different models run at the same time, so the API gives each model a share of the cores
(`ApiSettings.threads_per_model`): on 2 cores, /predict/both runs its two models side by side on one
thread each, which costs ~17 % less CPU per image than one model on two threads (measured, int8).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from evbattery.inference.predictor import Prediction, Predictor

OnBatch = Callable[[str, int, float], None]  # (model name, batch size, seconds)


@dataclass
class _Item:
    predictor: Predictor
    x: torch.Tensor  # (3, S, S) uint8
    future: Future = field(default_factory=Future)


class BatchRunner:
    """Per-model queues, each drained by its own daemon thread in batches of up to `max_batch`."""

    def __init__(self, max_batch: int = 16, on_batch: OnBatch | None = None, autostart: bool = True,
                 torch_threads: int | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._lanes: dict[int, tuple[queue.Queue[_Item | None], threading.Thread]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._started = autostart  # False: inputs queue up until start() (warm-up, tests)
        self.torch_threads = torch_threads  # intra-op threads of torch models, set inside each lane

    def submit(self, predictor: Predictor, x: torch.Tensor) -> Future:
        """Queue one prepared (3,S,S) uint8 input; the Future resolves to its Prediction."""
        item = _Item(predictor, x)
        with self._lock:
            if self._closed:
                raise RuntimeError("BatchRunner is closed")
            lane = self._lanes.get(id(predictor))
            if lane is None:
                q: queue.Queue[_Item | None] = queue.Queue()
                t = threading.Thread(target=self._loop, args=(q,), name=f"evbattery-batch-{predictor.name}",
                                     daemon=True)
                lane = self._lanes[id(predictor)] = (q, t)
                if self._started:
                    t.start()
            lane[0].put(item)
        return item.future

    def predict(self, predictor: Predictor, x: torch.Tensor, timeout: float | None = None) -> Prediction:
        """Submit and wait: the Prediction for one input, computed in whatever batch it joined."""
        return self.submit(predictor, x).result(timeout=timeout)

    def start(self) -> None:
        """Start the lanes' threads (needed only with autostart=False)."""
        with self._lock:
            self._started = True
            for _, t in self._lanes.values():
                if t.ident is None:  # not started yet
                    t.start()

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            lanes = list(self._lanes.values())
        for q, _ in lanes:
            q.put(None)
        for _, t in lanes:
            if t.ident is not None:
                t.join(timeout)

    def _take(self, q: queue.Queue[_Item | None]) -> tuple[list[_Item], bool]:
        first = q.get()
        if first is None:
            return [], True
        items, stop = [first], False
        while len(items) < self.max_batch:
            try:
                nxt = q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            items.append(nxt)
        return items, stop

    def _loop(self, q: queue.Queue[_Item | None]) -> None:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        while True:
            items, stop = self._take(q)
            if items:
                self._run(items)
            if stop:
                return

    def _run(self, group: list[_Item]) -> None:
        pred = group[0].predictor
        t0 = time.perf_counter()
        try:
            out = pred.decode(*pred.outputs(torch.stack([it.x for it in group])))
        except Exception as e:  # every waiter gets the error; the lane lives on
            for it in group:
                it.future.set_exception(e)
            return
        for it, prediction in zip(group, out, strict=True):
            it.future.set_result(prediction)
        if self.on_batch is not None:
            self.on_batch(pred.name, len(group), time.perf_counter() - t0)

"""Dynamic batching: queued inputs of several models run as per-model batches with unchanged answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from serving_models import toy_test_files

from evbattery.core.imageio import load_mask, load_rgb
from evbattery.inference.batching import BatchRunner
from evbattery.inference.predictor import Predictor
from evbattery.inference.service import ModelService
from evbattery.models.registry import discover_models


def test_queued_inputs_form_per_model_batches(model_dir: Path, toy_dataset: Path) -> None:
    paths = discover_models(model_dir)
    img_model, cut_model = Predictor.from_checkpoint(paths["images"]), Predictor.from_checkpoint(paths["cutouts"])
    images = [load_rgb(p) for p, _, _ in toy_test_files(toy_dataset)[:3]]
    batches: list[tuple[str, int]] = []
    runner = BatchRunner(max_batch=2, on_batch=lambda name, n, sec: batches.append((name, n)), autostart=False)
    futures = []
    for im in images:  # interleaved: images, cutouts, images, cutouts, ...
        for model in (img_model, cut_model):
            futures.append((model, im, runner.submit(model, model.prepare(im))))
    runner.start()
    try:
        for model, im, fut in futures:
            alone = model.logits(model.prepare(im)[None])[0]
            np.testing.assert_allclose(fut.result(timeout=30).logits, alone, rtol=1e-4, atol=1e-4)
    finally:
        runner.close()
    # 3 queued inputs per model, at most 2 per batch: each model's lane runs a batch of 2, then of 1
    assert [n for m, n in batches if m == "images"] == [2, 1] and [n for m, n in batches if m == "cutouts"] == [2, 1]


def test_a_failing_batch_fails_its_waiters_only(model_dir: Path) -> None:
    model = Predictor.from_checkpoint(discover_models(model_dir)["images"])
    runner = BatchRunner(max_batch=8)
    try:
        bad = runner.submit(model, torch.zeros(5, 64, 64, dtype=torch.uint8))  # 5 channels: the conv refuses it
        with pytest.raises(RuntimeError):
            bad.result(timeout=30)
        good = runner.predict(model, torch.zeros(3, 64, 64, dtype=torch.uint8), timeout=30)
        assert len(good.logits) == 3 and np.isfinite(good.logits).all()
    finally:
        runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(model, torch.zeros(3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="max_batch"):
        BatchRunner(max_batch=0)


def test_service_answers_are_the_same_with_concurrent_batching(model_dir: Path, toy_dataset: Path) -> None:
    files = toy_test_files(toy_dataset)
    plain = ModelService.load(model_dir)
    batched_sizes: list[int] = []
    batched = ModelService.load(model_dir, batcher=BatchRunner(8, on_batch=lambda n, k, s: batched_sizes.append(k)))
    names = ["images", "cutouts", "images_debiased"]

    def run(svc: ModelService, i: int) -> dict:
        img, mask, _ = files[i]
        return svc.run(names, load_rgb(img), uploaded_mask=load_mask(mask))

    try:
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda i: run(batched, i), range(len(files))))
        for i, out in enumerate(together):
            ref = run(plain, i)
            assert out["mask_source"] == ref["mask_source"] == "uploaded"
            for n in names:
                assert out["predictions"][n].predicted_class == ref["predictions"][n].predicted_class
                np.testing.assert_allclose(out["predictions"][n].logits, ref["predictions"][n].logits, rtol=1e-4, atol=1e-4)
    finally:
        batched.close()
    assert sum(batched_sizes) == len(files) * len(names)  # every input went through the batcher once

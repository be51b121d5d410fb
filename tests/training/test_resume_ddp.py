"""Faults and scale-out: SIGKILL mid-epoch then --resume; torchrun with 2 gloo processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from toy_data import SIZE, tiny_config

FLAGS = ["--epochs", "3", "--batch-size", "8", "--image-size", str(SIZE), "--workers", "0", "--tracker", "none",
         "--pretrained", "none", "--limit-train", "16", "--no-progress"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "INPUT_TYPE": "cutouts", **extra}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_continues_from_last_completed_epoch(toy_dataset, tmp_path):
    from evbattery.training.train import main

    out = ["--data-dir", str(toy_dataset), "--model-dir", str(tmp_path / "model"), "--runs-dir", str(tmp_path / "runs")]
    # Each step sleeps 0.7 s, so an epoch (2 steps) lasts > 1.4 s: the kill lands inside epoch 1.
    proc = subprocess.Popen([sys.executable, "-m", "evbattery.train", *FLAGS, *out], env=_env(EVBATTERY_STEP_DELAY="0.7"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = tmp_path / "model" / "last_cutouts.pth"
    deadline = time.time() + 60
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timeout"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] == 0  # epoch 1 was cut off mid-way
    assert not list((tmp_path / "model").glob(".*.tmp"))  # atomic writes leave no partial files

    cfg = tiny_config(toy_dataset, tmp_path, input_type="cutouts", epochs=3, limit_train=16, resume=True)
    with pytest.raises(ValueError, match="lr"):  # a different config is refused, naming the field
        main(tiny_config(toy_dataset, tmp_path, input_type="cutouts", epochs=3, limit_train=16, resume=True, lr=0.1))
    result = main(cfg)
    assert result["start_epoch"] == 1
    assert [r["epoch"] for r in result["history"]] == [0, 1, 2]
    assert result["history"][0] == saved["history"][0]  # epoch 0 is not redone
    assert torch.load(last, weights_only=True)["epoch"] == 2
    rows = [json.loads(x) for x in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]  # same run continues


@pytest.mark.slow
def test_torchrun_two_gloo_processes_write_one_checkpoint(toy_dataset, tmp_path):
    out = ["--data-dir", str(toy_dataset), "--model-dir", str(tmp_path / "model"), "--runs-dir", str(tmp_path / "runs")]
    flags = [*FLAGS, *out, "--epochs", "1", "--input-type", "images"]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "evbattery.train", *flags], env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count('"checkpoint"') == 1  # only rank 0 reports
    meta = torch.load(tmp_path / "model" / "best_model_images.pth", weights_only=True)["meta"]
    assert meta["best_epoch"] == 0 and meta["name"] == "images"
    assert len(list((tmp_path / "runs").iterdir())) == 1  # only rank 0 tracks
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["best_model_images.pth", "last_images.pth"]

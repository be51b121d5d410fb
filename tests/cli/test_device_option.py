"""--device on every command that runs a model: a CUDA request on a machine without a GPU (CI, this CPU) is one
clear line and exit 1, before any work; a malformed spec names the valid forms."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from evbattery.cli.app import app

COMMANDS = [["train", "--tracker", "none"], ["evaluate"], ["predict", "x.jpg"], ["bias"],
            ["experiment", "bias-sweep", "--dry-run"], ["bench", "train"], ["bench", "infer"], ["bench", "api"],
            ["serve"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_cuda_without_a_gpu_is_one_line(cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, [*cmd, "--device", "cuda"])
    assert res.exit_code == 1, res.output
    assert "--device cuda: no CUDA device is available" in res.output and "Traceback" not in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_environment_variable_counts_like_the_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVBATTERY_DEVICE", "cuda:1")
    res = CliRunner().invoke(app, ["evaluate"])
    assert res.exit_code == 1 and "--device cuda:1: no CUDA device" in res.output


def test_malformed_device_names_the_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["evaluate", "--device", "gpu"])
    assert res.exit_code == 1 and "expected one of auto, cpu, cuda or cuda:N" in res.output

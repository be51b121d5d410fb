"""evbattery.core.devices: --device forms, the one-line error without a GPU, autocast, helpers; the Predictor and
Segmenter on an explicit device; the synth worker default (issue 23)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evbattery.core.devices import (
    DeviceError,
    autocast,
    bf16_supported,
    channels_last,
    check_device_spec,
    cpu_supports_bf16,
    peak_bf16_matmul_tflops,
    resolve_device,
    sync,
    timed,
)

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu_forms(spec: str) -> None:
    assert resolve_device(spec) == torch.device("cpu")


def test_auto_is_cuda_when_available_else_cpu() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_torch_device_objects_are_accepted() -> None:
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_none_reads_evbattery_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv("EVBATTERY_DEVICE", "tpu")
    with pytest.raises(DeviceError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(None)


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cuda0", "mps", "", "cpu:0"])
def test_bad_specs_name_the_valid_forms(spec: str) -> None:
    with pytest.raises(DeviceError, match=r"expected one of auto, cpu, cuda or cuda:N") as e:
        check_device_spec(spec)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_one_clear_line(spec: str) -> None:
    with pytest.raises(DeviceError) as e:
        resolve_device(spec)
    msg = str(e.value)
    assert msg.startswith(f"--device {spec}: no CUDA device is available on this machine (torch {torch.__version__}")
    assert msg.endswith("use --device cpu or auto") and "\n" not in msg


@pytest.mark.skipif(NO_GPU, reason="needs a GPU")
def test_cuda_index_beyond_the_count_is_refused() -> None:
    with pytest.raises(DeviceError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_train_config_checks_the_form_not_availability() -> None:
    from evbattery.training.config import TrainConfig

    assert TrainConfig(device="CUDA:1").device == "cuda:1"  # fine to configure on a CPU machine
    with pytest.raises(ValueError, match="--device 'gpu'"):
        TrainConfig(device="gpu")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_training_on_cuda_without_a_gpu_fails_before_any_work(tmp_path: Path) -> None:
    from evbattery.training.config import TrainConfig
    from evbattery.training.train import main

    cfg = TrainConfig(data_dir=str(tmp_path / "nowhere"), model_dir=str(tmp_path / "m"), device="cuda",
                      tracker="none")
    with pytest.raises(DeviceError, match="no CUDA device"):
        main(cfg)
    assert not (tmp_path / "m").exists()


def test_autocast_picks_bf16_where_supported() -> None:
    cpu = torch.device("cpu")
    assert bf16_supported(cpu) == cpu_supports_bf16()
    a = torch.randn(4, 4)
    with autocast(cpu, enabled=True):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(cpu, enabled=False):
        assert (a @ a).dtype == torch.float32
    with autocast(cpu):
        assert (a @ a).dtype == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)




def test_helpers_on_cpu() -> None:
    x = torch.zeros(2, 3, 8, 8)
    assert channels_last(x).is_contiguous(memory_format=torch.channels_last)
    assert channels_last(torch.zeros(3)).shape == (3,)
    m = channels_last(torch.nn.Conv2d(3, 4, 3))
    assert m.weight.is_contiguous(memory_format=torch.channels_last)
    sync("cpu")
    with timed("cpu") as t:
        pass
    assert t[0] >= 0
    assert peak_bf16_matmul_tflops("cpu", n=64, seconds=0.05) > 0


# -- the Predictor and Segmenter on an explicit device ----------------------------------------------------------
def _checkpoint(path: Path, size: int = 32) -> None:
    from evbattery.models.checkpoint import default_meta, save_checkpoint
    from evbattery.models.classifier import build_classifier

    torch.manual_seed(0)
    model, _ = build_classifier(3, "none")
    save_checkpoint(path, model.state_dict(), default_meta("images") | {"image_size": size, "pretrained": "none"})


def test_predictor_on_cpu_gives_the_default_logits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evbattery.inference.predictor import Predictor

    monkeypatch.delenv("EVBATTERY_DEVICE", raising=False)
    _checkpoint(tmp_path / "best_model_images.pth")
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    default = Predictor.from_checkpoint(tmp_path / "best_model_images.pth")
    on_cpu = Predictor.from_checkpoint(tmp_path / "best_model_images.pth", device="cpu")
    assert on_cpu.device == torch.device("cpu") and default.device == resolve_device("auto")
    a, b = default.logits(batch), on_cpu.logits(batch)
    assert a.dtype == b.dtype == np.float32 and a.shape == (4, 3)
    # Same device here: identical; on a GPU machine the default is CUDA (bf16 there: ~1e-2).
    np.testing.assert_allclose(a, b, atol=0 if default.device.type == "cpu" else 0.05)


def test_predictor_bad_device_is_refused(tmp_path: Path) -> None:
    from evbattery.inference.predictor import Predictor

    _checkpoint(tmp_path / "best_model_images.pth")
    with pytest.raises(DeviceError):
        Predictor.from_checkpoint(tmp_path / "best_model_images.pth", device="gpu")


def test_segmenter_takes_a_device(tmp_path: Path) -> None:
    from evbattery.inference.segmenter import Segmenter
    from evbattery.models.checkpoint import save_checkpoint
    from evbattery.models.segmenter import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter("unet_resnet18")
    meta = {"arch": "unet_resnet18", "task": "segmentation", "image_size": 32, "classes": ["background", "cell"]}
    save_checkpoint(tmp_path / "segmenter.pth", model.state_dict(), meta)
    seg = Segmenter.from_checkpoint(tmp_path / "segmenter.pth", device="cpu")
    assert seg.device == torch.device("cpu") and not seg.bf16  # the CPU keeps the fp32 masks
    mask = seg.predict_mask(np.zeros((40, 50, 3), np.uint8))
    assert mask.shape == (40, 50) and mask.dtype == np.uint8


def test_synth_workers_default_to_every_usable_core() -> None:
    import os

    from evbattery.data.synth.generate import default_workers

    assert default_workers() == len(os.sched_getaffinity(0))


def test_synth_workers_are_not_capped_at_8(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from evbattery.data.synth import generate

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert generate.default_workers() == 16

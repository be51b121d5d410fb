"""ONNX Runtime as the CPU backend of batch jobs (probe features, evaluation, the bias suite) on CPUs without
native bf16, where torch runs these networks in slow fp32.

Measured on a 2-core AMD Zen 3 (AVX2 only), 2026-12-07, fp32, 2 threads, batch 32 (segmenter 16), img/s:

    network                       torch (channels_last)   ONNX Runtime
    EfficientNet-Lite2, 224 px    17                      79
    EfficientNet-Lite0, 224 px    24                      112
    U-Net on Lite0, 160 px        37                      52

The graph is exported in memory by torch's TorchScript-based exporter, about 1 s per network (torch.export's
exporter takes 20 s), after timm's dynamic TF-"SAME" padding is fixed for the input size: left dynamic, it
exports as shape arithmetic that ONNX Runtime cannot fold, and Lite2 ran at 46 img/s. So ONNX Runtime repays its
export from about a hundred forward passes (ORT_MIN_FORWARDS). Every graph is checked against torch on a fixed
batch before it is used; the torch model stays (Grad-CAM needs its gradients). The files `evbattery export onnx`
writes are another matter (inference/export.py): self-contained, with the metadata inside.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from evbattery.data.transforms import normalize
from evbattery.inference.onnx import max_abs_diff, session_options

ORT_MIN_FORWARDS = 100


class _Output(nn.Module):
    """A network's tensor outputs: the "out" entry of a segmenter's {"out": logits}, a classifier's logits, or its
    (logits, features) (models/backbones.LogitsAndFeatures)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.net(x)
        return out["out"] if isinstance(out, dict) else out


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def static_same_padding(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of `model` (eval, fp32, contiguous) whose timm Conv2dSame layers pad by the fixed amounts that
    inputs of `example`'s height and width need (timm's Conv2dSameExport), so an export has no shape arithmetic."""
    from timm.layers.conv2d_same import Conv2dSame, Conv2dSameExport
    from timm.layers.padding import pad_same_arg

    net = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format).eval()
    sizes: dict[nn.Module, list[int]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: sizes.__setitem__(mod, list(args[0].shape[-2:])))
             for m in net.modules() if isinstance(m, Conv2dSame)]
    try:
        with torch.no_grad():
            net(example[:1])
    finally:
        for h in hooks:
            h.remove()
    for conv, hw in sizes.items():
        conv.__class__ = Conv2dSameExport
        conv.pad = nn.ZeroPad2d(pad_same_arg(hw, list(conv.weight.shape[-2:]), conv.stride, conv.dilation))
        conv.pad_input_size = hw
    return net


def onnx_runtime_session(model: nn.Module, example: torch.Tensor, threads: int = 2, atol: float = 1e-3) -> Any:
    """An ONNX Runtime session computing `model`'s tensor output(s) for float inputs shaped like `example` (any
    batch size; input "input"; outputs "output", then "output1"... for a model that returns a tuple), exported in
    memory. Raises ValueError when an output on `example` differs from torch's by more than atol x max(1,
    |torch output|)."""
    import onnxruntime as ort

    with torch.no_grad():
        refs = [r.float().cpu().numpy()
                for r in _as_tuple(_Output(model)(example.to(next(model.parameters()).device)))]
    net = _Output(static_same_padding(model, example))
    names = ["output"] + [f"output{i}" for i in range(1, len(refs))]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: chosen for its speed
        torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["input"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ["input", *names]})
    session = ort.InferenceSession(buf.getvalue(), sess_options=session_options(threads),
                                   providers=["CPUExecutionProvider"])
    for name, ref, got in zip(names, refs, session.run(None, {"input": example.numpy()}), strict=True):
        diff = max_abs_diff(ref, got)
        if diff > atol * max(1.0, float(np.abs(ref).max())):
            raise ValueError(f"ONNX {name} differs from torch by {diff:.2g} (> {atol:g} x max(1, |output|))")
    return session


def onnx_runtime_fits(device: torch.device, bf16: bool, n_forwards: int | None = None) -> str | None:
    """None when ONNX Runtime should run a model on `device`, else why not (one line). n_forwards None: asked for
    explicitly, so only the device counts; else the model must be fp32 (on a CPU with native bf16, torch's bf16
    path is the one chosen and measured there) and the job must make at least ORT_MIN_FORWARDS forward passes."""
    if device.type != "cpu":
        return f"ONNX Runtime runs on the CPU, not on {device}"
    if n_forwards is None:
        return None
    if bf16:
        return "this CPU has native bf16, so torch's bf16 path runs (pass --onnx on to use ONNX Runtime)"
    if n_forwards < ORT_MIN_FORWARDS:
        return f"{n_forwards} forward passes are too few to repay an ONNX export (from {ORT_MIN_FORWARDS})"
    return None


def attach_onnx_runtime(runner: Any, n_forwards: int | None = None, threads: int = 2,
                        atol: float = 1e-3) -> str | None:
    """Run a Predictor's logits or a Segmenter's masks through ONNX Runtime (fp32) from now on, keeping its torch
    model for Grad-CAM.

    n_forwards: how many forward passes the job makes; None when asked for explicitly (`--onnx on`). See
    onnx_runtime_fits: CPU only; unasked, only on CPUs without native bf16 and from ORT_MIN_FORWARDS passes. Never
    for a quantized model. A graph that does not match torch leaves the runner on torch. Returns None when
    attached, else why not (one line)."""
    if runner.backend != "torch":
        return f"{runner.source}: already runs {runner.backend}"
    why = ("ONNX Runtime is used here only for fp32 models" if runner.meta.get("quantization")
           else onnx_runtime_fits(runner.device, runner.bf16, n_forwards))
    if why:
        return f"{runner.source}: {why}"
    gen = torch.Generator().manual_seed(0)
    probe = torch.randint(0, 256, (4, 3, runner.image_size, runner.image_size), dtype=torch.uint8, generator=gen)
    try:
        runner._session = onnx_runtime_session(runner.graph, normalize(probe, runner.mean, runner.std), threads, atol)
    except Exception as e:
        return f"{runner.source}: {type(e).__name__}: {e}; kept torch"
    runner.backend, runner.bf16 = "onnx", False  # its logits are fp32 now (a Predictor's precision says so)
    return None

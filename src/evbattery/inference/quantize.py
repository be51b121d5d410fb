"""int8 ONNX models: static post-training quantization with ONNX Runtime, calibrated on real images.

Weights are int8 per output channel, activations uint8 with ranges measured on calibration images
that went through the Predictor's own preprocessing (photos for photo models, cutouts for cutout
models). The result is a QDQ-format .onnx that carries the checkpoint metadata plus a "quantization"
entry, so `Predictor.from_onnx` loads it like the fp32 file. On the 2-core AVX2 machine used here it
runs ResNet-18 at 224 px in about half the time of fp32 (`evbattery bench infer`), and
`evbattery export onnx --int8` reports how often its top-1 answer agrees with the fp32 model.

On x86 CPUs without VNNI (AVX2, this machine kind included) ONNX Runtime's uint8 x int8 kernels sum pairs
of products in saturating 16-bit lanes, so full-range int8 weights can overflow; ONNX Runtime's own
advice there is 7-bit weights (`reduce_range`). Measured on three toy ResNet-18s on a Zen 3 (AVX2, no
VNNI), 72 photos each: mean probability gap to fp32 0.092 / 0.044 / 0.055 with 8-bit weights against
0.039 / 0.035 / 0.041 with 7-bit, top-1 agreement 0.86 / 0.90 / 0.93 against 0.94 / 0.90 / 0.97. So the
default follows the CPU that quantizes (which is the one that serves, in `export onnx --int8` and the
benches); the choice is recorded in the model's metadata.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evbattery.inference.export import export_onnx
from evbattery.inference.onnx import set_metadata
from evbattery.inference.predictor import Predictor

INT8_SUFFIX = ".int8.onnx"
CALIBRATION_BATCH = 8
# How far an int8 file's novelty threshold moves: this quantile of the distance int8 rounding adds on the calibration
# photos. Measured on the recipe's Lite2 image probe (105 real, 150 synthetic test photos): the median kept every
# real photo's fp32 flag (98.1 % flagged) and flagged 5.3 % of synthetic ones (fp32 4.7 %); the 90th percentile hid
# 7 % of the real flags (91.4 %) for 1.3 %. A missed flag is the worse error (the note would claim agreement on a
# photo the model is out of its depth on), so the median.
NOVELTY_SHIFT_QUANTILE = 0.5


def int8_path(onnx_dir: Path, name: str) -> Path:
    """Where the int8 model of `name` lives next to its fp32 `<name>.onnx`."""
    return Path(onnx_dir) / f"{name}{INT8_SUFFIX}"


def calibration_images(data_dir: Path, input_type: str, n: int = 64, split: str = "train") -> list[np.ndarray]:
    """Up to n images of a dataset split spread evenly over it: photos, or cutouts for a cutout model."""
    from evbattery.core.imageio import load_rgb
    from evbattery.data.layout import DatasetLayout

    samples = DatasetLayout(Path(data_dir)).require_split(split)
    step = max(1, len(samples) // n)
    kind = "cutouts" if input_type == "cutouts" else "images"
    return [load_rgb(s.path(kind)) for s in samples[::step][:n]]


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when this CPU has an int8 dot-product instruction (AVX512-VNNI / AVX-VNNI) that does not saturate."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def default_reduce_range() -> bool:
    """7-bit weights on x86 without VNNI (saturating 16-bit accumulation there); full 8-bit elsewhere."""
    return platform.machine().lower() in {"x86_64", "amd64", "i686", "x86"} and not cpu_has_vnni()


def random_calibration(size: int, n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """n random size x size photos: enough to time an int8 model (its speed does not depend on them)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _batches(pred: Predictor, images: Sequence[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    for i in range(0, len(images), CALIBRATION_BATCH):
        batch = torch.stack([pred.prepare(im) for im in images[i:i + CALIBRATION_BATCH]])
        yield {"input": pred.to_input(batch).cpu().numpy()}


def quantize_int8(source: Predictor | Path | str, out_path: Path | str, images: Sequence[np.ndarray],
                  calibration_source: str = "", fp32_onnx: Path | None = None,
                  reduce_range: bool | None = None) -> Path:
    """Write an int8 (QDQ, per-channel weights) .onnx of a checkpoint or torch Predictor; returns its path.

    fp32_onnx: the model's fp32 export, if already written (saves exporting it again).
    reduce_range: 7-bit weights; None picks `default_reduce_range()` for this CPU.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from evbattery.core.io import atomic_write_bytes

    if not images:
        raise ValueError("int8 quantization needs at least one calibration image")
    pred = source if isinstance(source, Predictor) else Predictor.from_checkpoint(source, fast=False, device="cpu")
    if reduce_range is None:
        reduce_range = default_reduce_range()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = _batches(pred, images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = fp32_onnx or export_onnx(pred, Path(tmp) / "fp32.onnx")
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=reduce_range)
        proto = onnx.load(str(quantized))
        novelty, shift = _int8_novelty(pred, quantized, images)
    meta = {**pred.meta, "quantization": {"precision": "int8", "format": "QDQ", "weights": "int8 per-channel",
                                          "weight_bits": 7 if reduce_range else 8,
                                          "activations": "uint8", "calibration_images": len(images),
                                          "calibration_source": calibration_source,
                                          **({"novelty_threshold_shift": shift} if novelty else {})}}
    set_metadata(proto, meta, novelty)
    atomic_write_bytes(out_path, proto.SerializeToString())
    return out_path


def _int8_novelty(pred: Predictor, int8_file: Path, images: Sequence[np.ndarray]) -> tuple[Any, float]:
    """The novelty score for the int8 model: its threshold moved by how much further int8 features put the
    calibration images than fp32 ones (NOVELTY_SHIFT_QUANTILE), or (None, 0.0) for a model without a score.

    Quantized features carry rounding noise in every direction, and the score reads every direction: on a probe of
    plain colour photos the int8 model put four of nine held-out photos at 1.26-1.71 where fp32 put them at
    0.15-0.42 (two stay over after the move, at 1.03 and 1.10). The noise adds roughly the same distance to every photo, so the threshold
    takes that addition."""
    import dataclasses

    import onnxruntime as ort

    if pred.novelty is None:
        return None, 0.0
    session = ort.InferenceSession(str(int8_file), providers=["CPUExecutionProvider"])
    extra = []
    for i in range(0, len(images), CALIBRATION_BATCH):
        batch = torch.stack([pred.prepare(im) for im in images[i:i + CALIBRATION_BATCH]])
        fp32 = pred.outputs(batch)[1] * pred.novelty.threshold
        int8 = pred.novelty.distance(session.run(None, {"input": pred.to_input(batch).cpu().numpy()})[1])
        extra.append(int8 - fp32)
    shift = max(float(np.quantile(np.concatenate(extra), NOVELTY_SHIFT_QUANTILE)), 0.0)
    return dataclasses.replace(pred.novelty, threshold=pred.novelty.threshold + shift), round(shift, 4)


def agreement_report(reference: Predictor, candidate: Predictor, images: Sequence[np.ndarray]) -> dict[str, Any]:
    """How closely `candidate` (e.g. int8) follows `reference` (fp32) on images: top-1 agreement, prob gaps."""
    if not images:
        return {"images": 0}
    a = reference.predict(list(images))
    b = candidate.predict(list(images))
    same = [x.predicted_class == y.predicted_class for x, y in zip(a, b, strict=True)]
    gaps = [max(abs(x.probabilities[c] - y.probabilities[c]) for c in x.probabilities) for x, y in zip(a, b, strict=True)]
    familiar = [x.familiar == y.familiar for x, y in zip(a, b, strict=True) if x.familiar is not None]
    return {"images": len(same), "top1_agreement": round(float(np.mean(same)), 4),
            "max_prob_diff": round(float(np.max(gaps)), 4), "mean_prob_diff": round(float(np.mean(gaps)), 4),
            **({"familiar_agreement": round(float(np.mean(familiar)), 4)} if familiar else {})}

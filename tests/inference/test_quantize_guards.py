"""What `quantize_int8` writes, pinned (issue 25's mutation run over inference/quantize.py).

The int8 file must be QDQ with int8 per-channel weights (7-bit where asked or where the CPU needs it) and uint8
activations whose ranges come from every calibration image, carry the checkpoint metadata plus an exact
"quantization" entry, and be quantized from the fp32 export it is handed. The models are the hand-built colour
readers of tests/known_models.py (no training); the calibration photos are made here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from known_models import (
    colour_meta,
    colour_predictor,
    colour_reader_state_dict,
    damaged_state_dict,
    photo,
    write_colour_dataset,
)
from onnx import numpy_helper

from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetError, DatasetLayout
from evbattery.inference import quantize
from evbattery.inference.export import export_onnx
from evbattery.inference.onnx import META_KEY
from evbattery.inference.predictor import Predictor
from evbattery.inference.quantize import (
    calibration_images,
    cpu_has_vnni,
    int8_path,
    quantize_int8,
    random_calibration,
)
from evbattery.models.checkpoint import save_checkpoint
from evbattery.models.classifier import new_classifier


def calibration_photos(bright_at: int, n: int = 17) -> list[np.ndarray]:
    """n colour photos (pixels <= 218) over three calibration batches; photo `bright_at` has one pixel of 255."""
    photos = [photo(k % 3, (k + 1) % 3, seed=k)[0] for k in range(n)]
    assert max(int(p.max()) for p in photos) <= 218
    photos[bright_at][0, 0] = 255
    return photos


def graph(path: Path) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    proto = onnx.load(str(path))
    return proto, {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}


def input_scale(path: Path) -> float:
    """The scale of the QuantizeLinear on the model input: its calibrated range / 255."""
    proto, init = graph(path)
    (node,) = [n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"]
    assert init[node.input[2]].dtype == np.uint8 and int(init[node.input[2]]) == 0  # uint8, range starts at 0
    return float(init[node.input[1]])


def quantized_weights(path: Path) -> dict[str, np.ndarray]:
    _, init = graph(path)
    return {k.removesuffix("_quantized"): v for k, v in init.items() if k.endswith("_quantized")}


def test_the_int8_file_is_qdq_per_channel_7_bit_weights_uint8_activations_with_exact_metadata(tmp_path: Path) -> None:
    pred = colour_predictor()
    images = calibration_photos(bright_at=16)  # the last photo of the third (short) batch
    out = quantize_int8(pred, str(tmp_path / "m.int8.onnx"), images, "colours", reduce_range=True)
    assert out == tmp_path / "m.int8.onnx" and isinstance(out, Path) and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx"]  # nothing else left behind

    proto, init = graph(out)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "QLinearConv" not in ops  # QDQ, not QOperator
    weights = quantized_weights(out)
    assert len(weights) == 21  # 20 convolutions + fc
    for name, w in weights.items():
        assert w.dtype == np.int8, name
        scale, zero = init[f"{name}_scale"], init[f"{name}_zero_point"]
        assert scale.shape == (w.shape[0],) and zero.dtype == np.int8 and not zero.any(), name  # per channel
    assert max(int(np.abs(w).max()) for w in weights.values()) == 64  # 7 bits: symmetric range [-64, 64]
    activations = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert len(activations) > 10 and all(init[n.input[2]].dtype == np.uint8 for n in activations)
    # the input range is what the calibration photos span: pixels 0 to 255 (the bright one, in the last batch)
    assert input_scale(out) == pytest.approx(1 / 255, rel=1e-6)

    assert [p.key for p in proto.metadata_props] == [META_KEY]
    meta = Predictor.from_onnx(out).meta
    assert meta == {**pred.meta, "quantization": {
        "precision": "int8", "format": "QDQ", "weights": "int8 per-channel", "weight_bits": 7,
        "activations": "uint8", "calibration_images": 17, "calibration_source": "colours"}}


def test_full_range_weights_and_the_first_calibration_photo_count(tmp_path: Path) -> None:
    out = quantize_int8(colour_predictor(), tmp_path / "m.int8.onnx", calibration_photos(bright_at=0), "first",
                        reduce_range=False)
    assert max(int(np.abs(w).max()) for w in quantized_weights(out).values()) == 127  # 8 bits
    assert input_scale(out) == pytest.approx(1 / 255, rel=1e-6)
    q = Predictor.from_onnx(out).meta["quantization"]
    assert q["weight_bits"] == 8 and q["calibration_source"] == "first"
    # and without the bright pixel the input range is the photos' own (218 at most): calibration is measured
    dim = quantize_int8(colour_predictor(), tmp_path / "dim.int8.onnx", calibration_photos(bright_at=0)[1:], "x",
                        reduce_range=False)
    assert input_scale(dim) == pytest.approx(218 / 255 / 255, rel=1e-6)


def test_unspecified_weight_bits_follow_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize, "default_reduce_range", lambda: True)  # a CPU without VNNI
    out = quantize_int8(colour_predictor(), tmp_path / "m.int8.onnx", calibration_photos(bright_at=3))
    assert max(int(np.abs(w).max()) for w in quantized_weights(out).values()) == 64
    q = Predictor.from_onnx(out).meta["quantization"]
    assert q["weight_bits"] == 7 and q["calibration_source"] == ""


def test_a_checkpoint_path_is_loaded_and_a_given_fp32_export_is_the_one_quantized(tmp_path: Path) -> None:
    """source may be a checkpoint path; fp32_onnx, when given, is quantized as is (not exported afresh)."""
    ckpt = tmp_path / "faithful.pth"
    save_checkpoint(ckpt, colour_reader_state_dict(), colour_meta("images", "images"))
    photos = [photo(k, k, seed=k)[0] for k in range(3)]
    damaged_fp32 = export_onnx(colour_predictor(damaged_state_dict()), tmp_path / "damaged.onnx")

    faithful = Predictor.from_onnx(quantize_int8(ckpt, tmp_path / "a.int8.onnx", photos, "c", reduce_range=True))
    assert [p.predicted_class for p in faithful.predict(photos)] == ["cylindrical", "pouch", "prismatic"]
    assert faithful.meta["dataset_fingerprint"] == "known-models" and faithful.precision == "int8"
    handed = Predictor.from_onnx(quantize_int8(ckpt, tmp_path / "b.int8.onnx", photos, "c",
                                               fp32_onnx=damaged_fp32, reduce_range=True))
    assert [p.predicted_class for p in handed.predict(photos)] == ["pouch", "prismatic", "cylindrical"]


def test_no_calibration_images_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^int8 quantization needs at least one calibration image$"):
        quantize_int8(tmp_path / "no-such.pth", tmp_path / "m.int8.onnx", [])
    assert not (tmp_path / "m.int8.onnx").exists()


@pytest.fixture(scope="module")
def colour_splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("calib") / "data", per_group=8, balanced=True,
                                splits=("train", "val"))  # 72 photos per split


def test_calibration_images_spread_evenly_over_the_split(colour_splits: Path) -> None:
    layout = DatasetLayout(colour_splits)
    train, val = layout.require_split("train"), layout.require_split("val")
    assert len(train) == len(val) == 72

    def same(got: list[np.ndarray], samples: list, kind: str) -> bool:
        return len(got) == len(samples) and all(np.array_equal(g, load_rgb(s.path(kind))) for g, s in zip(
            got, samples, strict=True))

    assert same(calibration_images(colour_splits, "images", 10), train[::7][:10], "images")  # every 7th of 72
    assert same(calibration_images(colour_splits, "cutouts", 10, split="val"), val[::7][:10], "cutouts")
    assert same(calibration_images(colour_splits, "images"), train[:64], "images")  # default: 64 (72 // 64 = 1)
    assert same(calibration_images(colour_splits, "images", 30), train[::2][:30], "images")
    assert same(calibration_images(colour_splits, "images", 500), train, "images")  # fewer than asked: all
    with pytest.raises(DatasetError, match=r"split .test. .* has no images"):
        calibration_images(colour_splits, "images", split="test")


@pytest.mark.parametrize(("flags", "vnni"), [
    ("fpu sse4_2 avx avx2 fma", False),
    ("fpu avx2 avx512f avx512_vnni", True),
    ("fpu avx2 avx_vnni", True),  # Alder Lake and later client cores: AVX-VNNI without AVX-512
    ("fpu avx512f amx_int8 amx_bf16", True),
    ("fpu avx512f avx512_vnnix", False),  # whole flags only
])
def test_cpu_has_vnni_reads_the_flags_line(tmp_path: Path, flags: str, vnni: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: X\nflags\t\t: {flags}\nbugs\t\t: avx512_vnni amx_int8\n")
    assert cpu_has_vnni(info) is vnni


def test_cpu_has_vnni_without_a_flags_line_or_file(tmp_path: Path) -> None:
    arm = tmp_path / "cpuinfo"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")  # aarch64 has no flags line
    assert cpu_has_vnni(arm) is False and cpu_has_vnni(tmp_path / "none") is False
    assert cpu_has_vnni() is cpu_has_vnni(Path("/proc/cpuinfo"))  # the default is this machine's


@pytest.mark.parametrize(("machine", "reduce"), [("x86_64", True), ("AMD64", True), ("i686", True), ("x86", True),
                                                 ("aarch64", False), ("arm64", False)])
def test_7_bit_weights_on_every_x86_name_without_vnni(machine: str, reduce: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize.platform, "machine", lambda: machine)
    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: False)
    assert quantize.default_reduce_range() is reduce


def test_random_calibration_and_int8_path() -> None:
    a = random_calibration(32)
    assert len(a) == 8 and all(x.shape == (32, 32, 3) and x.dtype == np.uint8 for x in a)
    assert min(int(x.min()) for x in a) == 0 and max(int(x.max()) for x in a) == 255  # the whole pixel range
    assert all(np.array_equal(x, y) for x, y in zip(a, random_calibration(32, seed=0), strict=True))
    assert not np.array_equal(a[0], random_calibration(32, n=1, seed=1)[0])
    assert len(random_calibration(16, n=3)) == 3
    assert int8_path(Path("onnx"), "images") == Path("onnx/images.int8.onnx")
    assert int8_path("onnx", "cutouts") == Path("onnx/cutouts.int8.onnx")  # type: ignore[arg-type]


def test_each_calibration_photo_is_prepared_once_in_batches_of_8(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibration reader feeds the photos once each, 8 at a time (17 photos: 8, 8, 1), as network input."""
    pred = colour_predictor()
    prepared, batches = [], []
    prepare, to_input = pred.prepare, pred.to_input
    monkeypatch.setattr(pred, "prepare", lambda im: prepared.append(im) or prepare(im))
    monkeypatch.setattr(pred, "to_input", lambda b: batches.append(tuple(b.shape)) or to_input(b))
    images = calibration_photos(bright_at=5)
    quantize_int8(pred, tmp_path / "m.int8.onnx", images, reduce_range=True)
    assert len(prepared) == 17 and all(p is im for p, im in zip(prepared, images, strict=True))
    assert batches == [(8, 3, 48, 48), (8, 3, 48, 48), (1, 3, 48, 48)]


def test_a_checkpoint_is_quantized_on_the_cpu_whatever_evbattery_device_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantization is a CPU job: a checkpoint path loads on the CPU even where EVBATTERY_DEVICE names a GPU."""
    ckpt = tmp_path / "faithful.pth"
    save_checkpoint(ckpt, colour_reader_state_dict(), colour_meta("images", "images"))
    monkeypatch.setenv("EVBATTERY_DEVICE", "cuda:63")  # no machine has it: any load there would fail
    photos = [photo(k, k, seed=k)[0] for k in range(3)]
    out = Predictor.from_onnx(quantize_int8(ckpt, tmp_path / "m.int8.onnx", photos, reduce_range=True))
    assert [p.predicted_class for p in out.predict(photos)] == ["cylindrical", "pouch", "prismatic"]


def test_metadata_that_is_not_plain_json_is_written_as_text_like_the_fp32_export(tmp_path: Path) -> None:
    """A Predictor built in code may carry paths or numpy numbers in its meta; both files store them as text."""
    model = new_classifier(3)
    model.load_state_dict(colour_reader_state_dict())
    meta = {**colour_meta("images", "images"), "data_dir": Path("data/synthetic"), "val_acc": np.float32(0.5)}
    pred = Predictor(model.eval(), meta, fast=False)
    photos = [photo(k, k, seed=k)[0] for k in range(3)]
    int8 = Predictor.from_onnx(quantize_int8(pred, tmp_path / "m.int8.onnx", photos, reduce_range=True)).meta
    fp32 = Predictor.from_onnx(export_onnx(pred, tmp_path / "m.onnx")).meta
    assert int8["data_dir"] == fp32["data_dir"] == "data/synthetic" and int8["val_acc"] == fp32["val_acc"] == "0.5"

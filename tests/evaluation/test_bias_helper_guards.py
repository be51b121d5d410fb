"""The bias suite's helpers, pinned one by one (issue 25's mutation run over evaluation/bias.py).

The suite's own tests (test_bias_suite*.py, test_bg_gap_guards.py) run these through `run_bias_suite`; here
each answers alone and fast: a split read from disk with its families, home families and masks at the photo's
size; predictions mapped to the dataset's classes by name; the models and mask sources the suite plans; Grad-CAM
shares paired with their own masks across batches; IoU at the project's mask threshold. The models are the
hand-built colour readers of known_models.py (answers known in advance), not stand-ins.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from known_models import (
    FAMILIES,
    colour_predictor,
    photo,
    write_colour_dataset,
    write_colour_readers,
)
from PIL import Image

from evbattery.core.config import CLASSES
from evbattery.data.layout import DatasetLayout
from evbattery.evaluation import bias
from evbattery.evaluation.bias import (
    _iou,
    _nanmean,
    build_variant,
    cam_shares,
    choose_partners,
    family_of,
    load_split,
    plan_evaluations,
    predict_indices,
    segmenter_or_note,
)
from evbattery.models.checkpoint import save_checkpoint
from evbattery.models.segmenter import build_segmenter


def test_iou_counts_a_pixel_at_the_mask_threshold_as_cell_on_either_side() -> None:
    at, full = np.full((2, 2), 128, np.uint8), np.full((2, 2), 255, np.uint8)
    below = np.full((2, 2), 127, np.uint8)
    assert _iou(at, full) == _iou(full, at) == 1.0
    assert _iou(below, full) == _iou(full, below) == 0.0
    half = np.array([[255, 255], [0, 0]], np.uint8)
    assert _iou(half, full) == 0.5
    assert math.isnan(_iou(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)))  # no cell in either


def test_predictions_are_mapped_to_the_datasets_classes_by_name() -> None:
    red, green, blue = (photo(k, k)[0] for k in range(3))  # the reader answers the dominant channel's row
    reordered = colour_predictor(classes=["pouch", "prismatic", "cylindrical"])
    assert predict_indices(reordered, [red, green, blue], tuple(CLASSES)).tolist() == [1, 2, 0]
    foreign = colour_predictor(classes=["cylindrical", "pouch", "button"])  # a class the dataset does not have
    got = predict_indices(foreign, [red, green, blue], tuple(CLASSES))
    assert got.tolist() == [0, 1, -1]  # counted wrong, never a real class index
    empty = predict_indices(reordered, [], tuple(CLASSES))
    assert empty.shape == (0,) and empty.dtype.kind == "i"


def test_predictions_go_in_batches_of_64_on_the_cpu_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    pred = colour_predictor(image_size=8)
    sizes: list[int] = []
    real = pred.logits
    monkeypatch.setattr(pred, "logits", lambda batch: (sizes.append(len(batch)), real(batch))[1])
    images = [photo(k % 3, k % 3, size=8, seed=k)[0] for k in range(130)]
    got = predict_indices(pred, images, tuple(CLASSES))
    assert sizes == [64, 64, 2] and got.tolist() == [k % 3 for k in range(130)]
    sizes.clear()
    predict_indices(pred, images[:5], tuple(CLASSES), batch_size=2)
    assert sizes == [2, 2, 1]


def test_a_picture_seen_before_is_not_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    pred = colour_predictor(image_size=8)
    sizes: list[int] = []
    real = pred.logits
    monkeypatch.setattr(pred, "logits", lambda batch: (sizes.append(len(batch)), real(batch))[1])
    red, green = photo(0, 0, size=8)[0], photo(1, 1, size=8)[0]
    seen: dict[bytes, int] = {}
    assert predict_indices(pred, [red, red, green, red], tuple(CLASSES), seen=seen).tolist() == [0, 0, 1, 0]
    assert sizes == [2]  # two distinct pictures, one batch
    assert predict_indices(pred, [green, red], tuple(CLASSES), seen=seen).tolist() == [1, 0] and sizes == [2]
    same_bytes_other_shape = red.reshape(4, 16, 3)  # the key includes the shape
    assert predict_indices(pred, [same_bytes_other_shape], tuple(CLASSES), seen=seen).tolist() == [0]
    assert sizes == [2, 1]


def test_grad_cam_shares_follow_their_own_masks_across_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    pred = colour_predictor()
    img = photo(0, 0, seed=1)[0]
    full, empty = np.full((20, 20), 255, np.uint8), np.zeros((20, 20), np.uint8)  # resized to the input size
    shares = cam_shares(pred, [img, img, img], [full, empty, full], batch_size=2)
    assert shares == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError):  # a photo without its mask is an error, not a silently shorter list
        cam_shares(pred, [img, img, img], [full, full], batch_size=4)

    # A small mask is resized nearest-neighbour, so it counts exactly the pixels of its blocky upscaling
    # (bilinear would round the 16 x 16 centre block of a 3 x 3 mask into a 160-pixel blob).
    centre = np.zeros((3, 3), np.uint8)
    centre[1, 1] = 255
    block = np.zeros((48, 48), np.uint8)
    block[16:32, 16:32] = 255
    (small,), (big,) = cam_shares(pred, [img], [centre]), cam_shares(pred, [img], [block])
    assert small == big and 0.05 < small < 0.2

    sizes: list[int] = []
    real = bias.gradcam_maps
    monkeypatch.setattr(bias, "gradcam_maps", lambda p, batch: (sizes.append(len(batch)), real(p, batch))[1])
    cam_shares(colour_predictor(image_size=8), [img] * 33, [full] * 33)
    assert sizes == [32, 1]


def test_variants_refuse_photos_and_masks_that_do_not_pair_up() -> None:
    img, mask = photo(0, 1)
    assert len(build_variant("only_fg", [img, img], [mask, mask], {})) == 2
    with pytest.raises(ValueError):
        build_variant("only_fg", [img, img], [mask], {})
    with pytest.raises(ValueError):
        build_variant("mixed_rand", [img, img], [mask, mask], {"mixed_rand": np.array([1])})


def test_partners_default_to_seed_0_and_are_integer_indices_even_for_no_photo() -> None:
    labels = np.repeat(np.arange(3), 10)
    default, zero, one = choose_partners(labels, 3), choose_partners(labels, 3, seed=0), choose_partners(labels, 3, 1)
    assert all(np.array_equal(default[v], zero[v]) for v in default)
    assert any(not np.array_equal(default[v], one[v]) for v in default)
    empty = choose_partners(np.zeros(0, dtype=int), 3)
    assert all(p.shape == (0,) and p.dtype.kind == "i" for p in empty.values())


def test_family_of_reads_the_cards_background_only_when_it_is_a_name() -> None:
    assert family_of({"background": "bench"}) == "bench"
    assert family_of({"background": ""}) is None and family_of({"background": 3}) is None and family_of({}) is None


def test_nanmean_skips_nan_and_is_none_without_a_number() -> None:
    assert _nanmean([float("nan"), 1.0, 4.0]) == 2.5
    assert _nanmean([float("nan")]) is None and _nanmean([]) is None


def test_a_split_is_read_with_masks_at_the_photos_size_families_and_home_families(tmp_path: Path) -> None:
    root = write_colour_dataset(tmp_path / "d", per_group=2, balanced=True)
    layout = DatasetLayout(root)
    mask = layout.mask_path("test", "pouch", "pou_test_green_0")
    small = np.zeros((3, 3), np.uint8)
    small[1, 1] = 255
    Image.fromarray(small).save(mask)  # a mask smaller than its photo: upscaled nearest-neighbour
    data = load_split(layout, "test", progress=False)
    assert len(data.images) == 18 and data.classes == tuple(CLASSES)
    assert [(s.cls, f) for s, f in zip(data.samples, data.families, strict=True)][:3] == [
        ("cylindrical", "blue"), ("cylindrical", "blue"), ("cylindrical", "green")]
    assert data.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    i = [s.key for s in data.samples].index("test/pouch/pou_test_green_0")
    block = np.zeros((48, 48), np.uint8)
    block[16:32, 16:32] = 255
    assert np.array_equal(data.masks[i], block)
    assert all(m.shape == im.shape[:2] for m, im in zip(data.masks, data.images, strict=True))
    assert data.home_families == {c: [FAMILIES[k]] for k, c in enumerate(CLASSES)}
    assert data.bg_owners.tolist() == [FAMILIES.index(f) for f in data.families]
    assert data.groups[:3] == ["cylindrical/blue", "cylindrical/blue", "cylindrical/green"]

    a = load_split(layout, "test", limit=5, seed=3, progress=False)
    b = load_split(layout, "test", limit=5, seed=3, progress=False)
    c = load_split(layout, "test", limit=5, seed=4, progress=False)
    keys = [s.key for s in a.samples]
    assert len(keys) == 5 and keys == [s.key for s in b.samples] != [s.key for s in c.samples]
    assert keys == sorted(keys, key=[s.key for s in data.samples].index)  # the split's order is kept
    assert [s.key for s in load_split(layout, "test", limit=18, progress=False).samples] == \
        [s.key for s in data.samples]

    plain = write_colour_dataset(tmp_path / "p", per_group=1, balanced=False)  # no home families in the card
    data = load_split(DatasetLayout(plain), "test", progress=False)
    assert data.home_families is None and data.bg_owners is None and data.families == list(FAMILIES)


def test_a_split_is_loaded_with_progress_unless_told_and_a_seed_0_subset_without_repeats(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = DatasetLayout(write_colour_dataset(tmp_path / "d", per_group=2, balanced=True))
    capsys.readouterr()
    data = load_split(layout, "test", limit=5)
    err = capsys.readouterr().err
    assert "load test" in err and "5/5" in err and "img/s" in err
    load_split(layout, "test", limit=5, progress=False)
    assert capsys.readouterr().err == ""
    assert [s.key for s in data.samples] == [s.key for s in load_split(layout, "test", 5, 0, False).samples]
    keys = [s.key for s in load_split(layout, "test", limit=17, progress=False).samples]
    assert len(set(keys)) == 17  # drawn without replacement


def test_photos_the_card_does_not_list_have_no_family(tmp_path: Path) -> None:
    layout = DatasetLayout(write_colour_dataset(tmp_path / "d", per_group=1, balanced=False))
    card = layout.read_card()
    del card["images"]["test/pouch/pou_test_green_0"]
    layout.write_card(card)
    data = load_split(layout, "test", progress=False)
    assert data.families == ["red", None, "blue"] and data.groups is None  # one unknown family: no groups
    layout.write_card({"source": {"kind": "known-colours"}})  # a card without per-image entries
    data = load_split(layout, "test", progress=False)
    assert data.families == [None, None, None] and data.groups is None and data.bg_owners is None


def test_the_suite_plans_one_evaluation_per_photo_model_and_per_mask_source(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVBATTERY_DEVICE", "cuda:63")  # no machine has it: only the device passed in can work
    models = write_colour_readers(tmp_path / "m")
    plans = plan_evaluations(models, with_segmenter=True, device="cpu")
    assert sorted((e.label, e.model, e.source) for e in plans) == [
        ("cutouts[pred]", "cutouts", "pred"), ("cutouts[true]", "cutouts", "true"), ("images", "images", "photo")]
    assert all(e.predictor.device == torch.device("cpu") for e in plans)
    plans = plan_evaluations(models, with_segmenter=False, device="cpu")
    assert sorted(e.label for e in plans) == ["cutouts[true]", "images"]
    seg, note = segmenter_or_note(models, device="cpu")
    assert seg is None and note == (f"no segmenter at {models / 'segmenter.pth'}: cutout models scored with "
                                    "true masks only")
    unet = build_segmenter("unet_resnet18")
    save_checkpoint(models / "segmenter.pth", unet.state_dict(), {"arch": "unet_resnet18", "task": "segmentation",
                                                                   "classes": ["background", "cell"]})
    seg, note = segmenter_or_note(models, device="cpu")
    assert note is None and seg.device == torch.device("cpu")
    assert seg.predict_mask(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16)

"""`run_bias_suite` plumbing that mutation testing showed unguarded (docs/mutation.md): its defaults, the
device argument, the seeded subset / partners / examples / Grad-CAM draws, the progress bars and the exact
shape of the summary.

The models are the hand-built colour readers of tests/known_models.py (no training): the photo model answers
the class of the background's colour, the cutout model the class of the cell's colour, so what the suite must
report on Mixed-Rand can be worked out by hand from the seeded partners.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from known_models import FAMILIES, colour_meta, colour_reader_state_dict, write_colour_dataset, write_colour_readers

from evbattery.core.config import CLASSES, DeviceError
from evbattery.core.devices import cpu_supports_bf16
from evbattery.data.cutouts import make_cutout
from evbattery.data.layout import DatasetLayout
from evbattery.data.variants import VARIANT_NAMES
from evbattery.evaluation.bias import build_variant, cam_shares, choose_partners, load_split, run_bias_suite
from evbattery.evaluation.bias_metrics import group_accuracy, share_histogram
from evbattery.inference.predictor import Predictor
from evbattery.models.checkpoint import save_checkpoint
from evbattery.models.registry import model_path, segmenter_path

DEBIAS = {"method": "bg-swap", "swap_prob": 0.5, "synth_share": 0.0}
HOME_RULE = "home families from the dataset card (a background belongs to the class whose home family it is)"
SUMMARY_KEYS = {"split", "data_dir", "model_dir", "seed", "n_images", "classes", "variants", "evaluations",
                "agreement_original", "segmenter_iou_original", "segmenter_backend", "families", "mixed_partner_rule",
                "notes"}
ENTRY_KEYS = {"model", "input_type", "source", "source_description", "checkpoint", "backend", "debias", "n", "accuracy",
              "bg_gap", "bg_only_accuracy", "gradcam_inside", "groups", "worst_group", "worst_group_noise",
              "mean_group_accuracy"}
HOME_KEYS = {"home_vs_other", "mixed_rand_by_donor", "mixed_rand_by_cell"}
UNUSABLE_DEVICE = "cuda:99"  # a valid form that no machine here has: resolve_device raises DeviceError
QUIET = {"progress": False}


def one_thread(fn):
    """Module fixtures run before the per-test one-thread fixture (conftest): keep their suite runs on one thread."""
    def wrapped(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapped


def bar(err: str, desc: str) -> bool:
    """Whether tqdm drew a bar named exactly `desc` on stderr."""
    return re.search(rf"(?:^|\r){re.escape(desc)}: ", err, re.M) is not None


@pytest.fixture(autouse=True)
def _device_from_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVBATTERY_DEVICE", raising=False)


@pytest.fixture(scope="module")
def colour_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images (a background reader, with a debias record) and cutouts (a cell reader), 48 px; no segmenter."""
    d = write_colour_readers(tmp_path_factory.mktemp("colour_models"))
    save_checkpoint(model_path(d, "images"), colour_reader_state_dict(),
                    {**colour_meta("images", "images"), "debias": DEBIAS})
    return d


@pytest.fixture(scope="module")
def models_with_segmenter(colour_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evbattery.models.segmenter import ARCH, build_segmenter

    d = tmp_path_factory.mktemp("models_seg")
    for name in ("images", "cutouts"):
        shutil.copy(model_path(colour_models, name), model_path(d, name))
    torch.manual_seed(0)  # untrained: its masks are poor, which does not matter here
    save_checkpoint(segmenter_path(d), build_segmenter().state_dict(),
                    {"name": "segmenter", "arch": ARCH, "task": "segmentation", "image_size": 32})
    return d


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the background reader, at 32 px (the cheapest suite run)."""
    return write_colour_readers(tmp_path_factory.mktemp("photo_model"), image_size=32, names=(("images", "images"),))


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 photos: every class on every family twice; the card records class k's home family k."""
    return write_colour_dataset(tmp_path_factory.mktemp("balanced") / "data", per_group=2, balanced=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 photos, every one on its class's own background; the card records no home families."""
    return write_colour_dataset(tmp_path_factory.mktemp("plain") / "data", per_group=3, balanced=False)


def test_defaults(tmp_path: Path, photo_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Called with folders only: seed 0 on the test split, two examples, Grad-CAM on at most 96 photos (99 here),
    progress bars on."""
    data = write_colour_dataset(tmp_path / "data", per_group=11, balanced=True)
    res = run_bias_suite(data, photo_model)
    s = res.summary
    assert (s["split"], s["seed"], s["n_images"]) == ("test", 0, 99)
    assert len(res.examples) == 2
    assert s["evaluations"]["images"]["gradcam_inside"]["n"] == 96
    err = capsys.readouterr().err
    assert bar(err, "load test") and bar(err, "variants"), err


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bars_only_when_asked(plain: Path, photo_model: Path, capsys: pytest.CaptureFixture[str],
                                       progress: bool) -> None:
    run_bias_suite(plain, photo_model, cam_limit=1, n_examples=1, progress=progress)
    err = capsys.readouterr().err
    assert bar(err, "load test") is progress and bar(err, "variants") is progress, err
    if not progress:
        assert "load test" not in err and "variants" not in err, err


def test_the_device_argument_beats_an_unusable_environment(plain: Path, models_with_segmenter: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """device='cpu' reaches the segmenter and every Predictor: EVBATTERY_DEVICE is only the fallback."""
    monkeypatch.setenv("EVBATTERY_DEVICE", UNUSABLE_DEVICE)
    with pytest.raises(DeviceError):
        run_bias_suite(plain, models_with_segmenter, cam_limit=1, n_examples=1, **QUIET)
    s = run_bias_suite(plain, models_with_segmenter, cam_limit=1, n_examples=1, device="cpu", **QUIET).summary
    assert list(s["evaluations"]) == ["images", "cutouts[true]", "cutouts[pred]"]
    assert s["evaluations"]["cutouts[true]"]["accuracy"]["original"] == 1.0


@pytest.fixture(scope="module")
def subset(balanced: Path, colour_models: Path):
    """6 of the 18 photos (seed 5), every one an example and a Grad-CAM photo; the split as the suite reads it."""
    res = one_thread(run_bias_suite)(balanced, colour_models, seed=5, limit=6, cam_limit=6, n_examples=6, **QUIET)
    return res, load_split(DatasetLayout(balanced), "test", 6, 5, progress=False)


def test_examples_are_the_seeded_subset_each_photo_once(subset) -> None:
    res, data = subset
    assert res.summary["n_images"] == 6
    assert [ex["sample"] for ex in res.examples] == [s.key for s in data.samples]


def test_example_pictures_are_the_variants_with_the_seeded_partners(subset) -> None:
    res, data = subset
    partners = choose_partners(data.labels, len(data.classes), 5, data.bg_owners)
    for v in VARIANT_NAMES:
        want = build_variant(v, data.images, data.masks, partners)
        for ex, im in zip(res.examples, want, strict=True):
            assert np.array_equal(ex["variants"][v], im), (ex["sample"], v)


def test_every_example_has_an_overlay_per_evaluation_and_variant(subset) -> None:
    res, _ = subset
    for ex in res.examples:
        assert set(ex["overlays"]) == {"images", "cutouts[true]"}
        for per_variant in ex["overlays"].values():
            assert set(per_variant) == set(VARIANT_NAMES)
            for v, ov in per_variant.items():
                assert ov.dtype == np.uint8 and ov.shape == ex["variants"][v].shape


def test_gradcam_scores_every_original_once(subset, colour_models: Path) -> None:
    """cam_limit >= n: the shares are those of every Original input exactly once (no repeats, no other variant)."""
    res, data = subset
    inputs = {"images": data.images, "cutouts": [make_cutout(im, m) for im, m in zip(data.images, data.masks,
                                                                                      strict=True)]}
    for label, name in (("images", "images"), ("cutouts[true]", "cutouts")):
        want = cam_shares(Predictor.from_checkpoint(model_path(colour_models, name), device="cpu"), inputs[name],
                          data.masks)
        assert len(set(want)) > 1  # the photos' shares differ, so a repeat or a wrong variant would show
        got = res.summary["evaluations"][label]["gradcam_inside"]
        assert got["n"] == 6
        assert got["mean"] == pytest.approx(np.mean(want)) and got["median"] == pytest.approx(np.median(want))
        assert got["histogram"] == share_histogram(want)


def test_no_gradcam_photos_report_no_share(plain: Path, photo_model: Path) -> None:
    got = run_bias_suite(plain, photo_model, cam_limit=0, n_examples=1, **QUIET).summary["evaluations"]["images"]
    assert got["gradcam_inside"] == {"mean": None, "n": 0, "median": None, "histogram": share_histogram([])}


def test_same_seed_same_result(balanced: Path, photo_model: Path) -> None:
    """Examples (3 of 18), Grad-CAM photos (5 of 18) and partners are all drawn from the seed."""
    a, b = (run_bias_suite(balanced, photo_model, seed=2, cam_limit=5, n_examples=3, **QUIET) for _ in range(2))
    assert [ex["sample"] for ex in a.examples] == [ex["sample"] for ex in b.examples]
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
    for ea, eb in zip(a.examples, b.examples, strict=True):
        assert all(np.array_equal(ea["variants"][v], eb["variants"][v]) for v in VARIANT_NAMES)


@pytest.fixture(scope="module")
def full(balanced: Path, models_with_segmenter: Path):
    return one_thread(run_bias_suite)(balanced, models_with_segmenter, seed=1, cam_limit=2, n_examples=1, **QUIET)


def test_summary_with_a_segmenter_and_home_families(full, balanced: Path, models_with_segmenter: Path) -> None:
    s = full.summary
    assert set(s) == SUMMARY_KEYS
    assert s["data_dir"] == str(balanced) and s["model_dir"] == str(models_with_segmenter)
    assert s["classes"] == list(CLASSES) and s["families"] == sorted(FAMILIES) and s["n_images"] == 18
    assert s["notes"] == [] and s["mixed_partner_rule"] == HOME_RULE
    assert list(s["evaluations"]) == ["images", "cutouts[true]", "cutouts[pred]"]
    assert isinstance(s["segmenter_iou_original"], float) and 0.0 <= s["segmenter_iou_original"] <= 1.0
    assert s["segmenter_backend"] == "onnx"  # fp32 on the CPU, 18 photos x 7 variants: from 100 passes it pays


@pytest.mark.parametrize(("label", "name", "input_type", "source", "description"), [
    ("images", "images", "images", "photo", "the variant photo"),
    ("cutouts[true]", "cutouts", "cutouts", "true", "cutout with the true mask"),
    ("cutouts[pred]", "cutouts", "cutouts", "pred", "cutout with the segmenter's mask"),
])
def test_evaluation_entries(full, models_with_segmenter: Path, label: str, name: str, input_type: str, source: str,
                            description: str) -> None:
    e = full.summary["evaluations"][label]
    assert set(e) == ENTRY_KEYS | HOME_KEYS
    assert (e["model"], e["input_type"], e["source"], e["source_description"]) == (name, input_type, source,
                                                                                   description)
    assert e["checkpoint"] == str(model_path(models_with_segmenter, name)) and e["n"] == 18
    # 18 photos x 7 variants = 126 forward passes repay an export; where the CPU has bf16, torch's bf16 path stays
    assert e["backend"] == ("torch" if cpu_supports_bf16() else "onnx")
    assert e["debias"] == (DEBIAS if name == "images" else None)
    assert e["bg_only_accuracy"] == {v: e["accuracy"][v] for v in ("no_fg", "only_bg_t")}
    assert set(e["gradcam_inside"]) == {"mean", "n", "median", "histogram"} and e["gradcam_inside"]["n"] == 2
    assert e["mean_group_accuracy"] == pytest.approx(np.mean([g["accuracy"] for g in e["groups"].values()]))
    assert e["worst_group_noise"]["pooled"] == pytest.approx(e["accuracy"]["original"])
    # One home family per class, all three distinct: 3! assignments to permute, so a null distribution exists.
    assert e["home_vs_other"]["null"]["n_assignments"] == 6
    for by in ("donor", "cell"):
        assert set(e[f"mixed_rand_by_{by}"]) == {"groups", "home_vs_other", "null"}


def test_mixed_rand_by_donor_and_by_cell_worked_out_by_hand(full, balanced: Path) -> None:
    """The background reader answers, on Mixed-Rand, the class of the donor's family. Grouped by the donor's
    family it is right exactly on the home groups; grouped by the cell's own family, each group holds the
    Original group's photos."""
    data = load_split(DatasetLayout(balanced), "test", seed=1, progress=False)
    donors = choose_partners(data.labels, 3, 1, data.bg_owners)["mixed_rand"]
    preds = np.array([FAMILIES.index(data.families[j]) for j in donors])
    e = full.summary["evaluations"]["images"]
    assert e["accuracy"]["mixed_rand"] == pytest.approx(np.mean(preds == data.labels))
    for by, fam in (("donor", [data.families[j] for j in donors]), ("cell", data.families)):
        groups = [f"{CLASSES[y]}/{f}" for y, f in zip(data.labels, fam, strict=True)]
        want = group_accuracy(data.labels, preds, groups)
        got = e[f"mixed_rand_by_{by}"]["groups"]
        assert {g: v["n"] for g, v in got.items()} == {g: v["n"] for g, v in want.items()}, by
        assert {g: v["accuracy"] for g, v in got.items()} == pytest.approx(
            {g: v["accuracy"] for g, v in want.items()}), by
    donor = e["mixed_rand_by_donor"]["home_vs_other"]
    assert (donor["home"], donor["other"]) == (1.0, 0.0)
    assert {g: v["n"] for g, v in e["mixed_rand_by_cell"]["groups"].items()} == {g: 2 for g in e["groups"]}


def test_a_card_without_home_families_and_no_segmenter(plain: Path, colour_models: Path) -> None:
    s = run_bias_suite(plain, colour_models, cam_limit=1, n_examples=1, **QUIET).summary
    assert s["mixed_partner_rule"] == "the donor photo's class"
    assert s["notes"] == [f"no segmenter at {segmenter_path(colour_models)}: cutout models scored with true masks only"]
    assert s["segmenter_iou_original"] is None
    assert list(s["evaluations"]) == ["images", "cutouts[true]"]
    for e in s["evaluations"].values():
        assert set(e) == ENTRY_KEYS  # no home families: no home-vs-other split, no Mixed-Rand regrouping

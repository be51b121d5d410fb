"""The synthetic generator: determinism, exact masks and cutouts, bias proportions, balance, areas, CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.config import CLASSES, CUTOUT_FILL
from evbattery.core.imageio import load_mask, load_rgb
from evbattery.data.layout import DatasetError, DatasetLayout
from evbattery.data.synth import generate as gen
from evbattery.data.synth.backgrounds import FAMILIES, render_background
from evbattery.data.synth.generate import HOME_FAMILIES, Task, generate_dataset, plan_split, render_task
from evbattery.data.synth.scene import AREA_MAX, AREA_MIN, sample_area

ARGS = {"n_train": 6, "n_val": 3, "n_test": 27, "size": 64, "bias": 0.5, "seed": 3}


@pytest.fixture(scope="module")
def synth_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same dataset generated twice: in one process and with two worker processes."""
    base = tmp_path_factory.mktemp("synth")
    a = generate_dataset(base / "a", workers=1, progress=False, **ARGS)
    b = generate_dataset(base / "b", workers=2, progress=False, **ARGS)
    return a, b


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_args_give_byte_identical_files_for_any_worker_count(synth_pair):
    a, b = synth_pair
    fa, fb = _files(a), _files(b)
    assert len(fa) == 3 * (6 + 3 + 27) + 1  # image, mask, cutout per photo + dataset.json
    assert fa.keys() == fb.keys()
    assert [k for k in fa if fa[k] != fb[k]] == []


def test_folder_contract_card_and_balanced_classes(synth_pair):
    layout = DatasetLayout(synth_pair[0])
    card = layout.read_card()
    assert card["counts"] == {"train": {"cylindrical": 2, "pouch": 2, "prismatic": 2},
                              "val": {"cylindrical": 1, "pouch": 1, "prismatic": 1},
                              "test": {"cylindrical": 9, "pouch": 9, "prismatic": 9}}
    assert card["home_families"] == {c: list(f) for c, f in HOME_FAMILIES.items()}
    assert card["source"]["params"]["bias"] == 0.5
    for s in layout.samples("test"):
        meta = layout.image_meta(s)
        assert meta["class"] == s.cls and meta["background"] in FAMILIES
        assert {"area_fraction", "n_cells", "pose", "occluders", "lighting", "camera"} <= meta.keys()
        assert load_rgb(s.image).shape == (64, 64, 3) and load_mask(s.mask).shape == (64, 64)


def test_cutout_equals_image_inside_mask_and_fill_outside(synth_pair):
    layout = DatasetLayout(synth_pair[0])
    for s in layout.samples("train") + layout.samples("test"):
        img, mask, cut = load_rgb(s.image), load_mask(s.mask) > 0, load_rgb(s.cutout)
        assert mask.any(), s.key
        assert (cut[~mask] == np.array(CUTOUT_FILL, np.uint8)).all()
        assert (cut[mask] == img[mask]).all()


def test_mask_is_visible_cell_minus_occluders():
    occluded = 0
    for i in range(60):
        task = Task("train", i, CLASSES[i % 3], FAMILIES[i % len(FAMILIES)], False)
        sc = render_task(task, 96, seed=11)
        cell, occ, mask = sc.cell_coverage >= 0.5, sc.occluder_coverage >= 0.5, sc.mask > 0
        assert (mask == (cell & ~occ)).all()
        assert mask.sum() >= 0.6 * cell.sum()  # occluders never hide most of the cell
        if (cell & occ).any():
            occluded += 1
            assert not mask[cell & occ].any()
    assert occluded >= 3  # occlusion really happens in the data


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 1.0])
def test_bias_proportion_matches_rho_on_900_images(rho):
    tasks = plan_split("train", 900, rho, seed=0)
    drawn_home = np.mean([t.home_draw for t in tasks])
    on_home = np.mean([t.family in HOME_FAMILIES[t.cls] for t in tasks])
    assert abs(drawn_home - rho) <= 0.05
    assert abs(on_home - (rho + (1 - rho) / 3)) <= 0.05  # uniform draws land on home families 1/3 of the time
    assert Counter(t.cls for t in tasks) == {c: 300 for c in CLASSES}


def test_generated_card_follows_the_plan(synth_pair):
    card = DatasetLayout(synth_pair[0]).read_card()["images"]
    for t in gen.plan(6, 3, 27, 0.5, 3):
        assert card[f"{t.split}/{t.cls}/{t.stem}"]["background"] == t.family


def test_test_split_is_balanced_over_class_and_family():
    groups = Counter((t.cls, t.family) for t in plan_split("test", 300, 1.0, seed=5))
    assert len(groups) == len(CLASSES) * len(FAMILIES)
    assert max(groups.values()) - min(groups.values()) <= 1
    assert all(not t.home_draw for t in plan_split("test", 30, 1.0, seed=5))


def test_object_area_statistics_match_real_recycling_photos():
    rng = np.random.default_rng(0)
    draws = np.array([sample_area(rng) for _ in range(20000)])
    assert draws.min() >= AREA_MIN and draws.max() <= AREA_MAX
    assert 0.07 <= draws.mean() <= 0.09
    areas = {c: [] for c in CLASSES}
    for i in range(45):
        task = Task("train", i, CLASSES[i % 3], FAMILIES[i % len(FAMILIES)], False)
        areas[task.cls].append((render_task(task, 96, seed=2).mask > 0).mean())
    allv = np.concatenate([np.array(v) for v in areas.values()])
    assert allv.min() >= 0.004 and allv.max() <= 0.4
    assert 0.04 <= allv.mean() <= 0.13


def test_backgrounds_are_deterministic_and_moderate_contrast():
    assert len(FAMILIES) >= 8
    for fam in FAMILIES:
        a = render_background(fam, 64, np.random.default_rng(1))
        b = render_background(fam, 64, np.random.default_rng(1))
        assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and (a == b).all()
        assert a.mean(axis=2).std() < 25, fam  # structured, not loud (the prototype's lesson)


@pytest.mark.parametrize("args, needle", [
    (["--n-train", "-1"], "n_train"),
    (["--bias", "1.5"], "bias"),
    (["--bias", "-0.1"], "bias"),
    (["--size", "8"], "size"),
    (["--packs", "prismatic=2"], "pack share of prismatic must be in [0, 1], got 2.0"),
    (["--packs", "pouch=0.1"], "no packs of 'pouch' cells; packs exist for cylindrical, prismatic"),
    (["--packs", "prismatic"], "--packs: 'prismatic' is not <class>=<share>"),
    (["--packs", "prismatic=lots"], "--packs: 'prismatic=lots' is not <class>=<share>"),
])
def test_bad_arguments_get_a_clear_message(tmp_path, args, needle):
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0
    assert needle in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_non_empty_output_needs_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n-train", "3", "--n-val", "0",
                                   "--n-test", "0", "--size", "48"])
    assert res.exit_code != 0 and "--overwrite" in res.output
    assert (out / "keep.txt").exists()
    with pytest.raises(DatasetError):
        generate_dataset(out, 3, 0, 0, size=48, progress=False)


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = gen._write_task

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(gen, "_write_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "o", 9, 0, 0, size=48, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_preview_writes_a_contact_sheet(synth_pair, tmp_path):
    out = tmp_path / "sheet.png"
    res = CliRunner().invoke(app, ["data", "preview", "--data", str(synth_pair[0]), "--out", str(out), "--n", "7",
                                   "--tile", "64"])
    assert res.exit_code == 0, res.output
    img = load_rgb(out)
    assert img.shape == (2 * (64 + 14), 6 * 64, 3)
    assert ((img == (60, 255, 60)).all(axis=2)).sum() > 20  # mask outlines are drawn


def test_bench_commands_write_their_reports(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("EVBATTERY_REPORTS_DIR", str(tmp_path))
    res = CliRunner().invoke(app, ["bench", "synth", "--n", "6", "--size", "48", "--workers", "1"])
    assert res.exit_code == 0, res.output
    bench = json.loads((tmp_path / "bench_synth.json").read_text())
    assert bench["images"] == 6 and bench["images_per_s"] > 0 and bench["cpu_ms_per_image"] > 0
    res = CliRunner().invoke(app, ["bench", "synth-difficulty", "--n-train", "30", "--n-test", "27", "--size", "48",
                                   "--workers", "1"])
    diff = json.loads((tmp_path / "synth_difficulty.json").read_text())
    assert set(diff) >= {"images", "cutouts", "limits", "pass"}
    assert 0 <= diff["images"]["test_accuracy"] <= 1 and diff["n_test"] == 27
    assert res.exit_code == (0 if diff["pass"] else 1)


def test_mask_rim_leak_script_measures_the_rim() -> None:
    """scripts/mask_rim_leak.py: the background inside coverage >= 0.5 cutouts is a thin, small rim."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mask_rim_leak", Path(__file__).parents[2] / "scripts" /
                                                  "mask_rim_leak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.rim_leak(6, 96, 0)
    assert res["scenes"] == 6
    # rim pixels exist (the mask is antialiased coverage >= 0.5), carry some background, and are a minority
    assert 0 < res["background_share"]["mean_pct"] < res["rim_pixels"]["mean_pct"] < 30


def test_packs_option_reaches_the_photos_and_the_card(tmp_path):
    """--packs prismatic=1: every prismatic photo is a module; cylindrical keeps its default share; the card says so."""
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n-train", "9", "--n-val", "0", "--n-test", "0",
                                   "--size", "64", "--workers", "1", "--packs", "prismatic=1"])
    assert res.exit_code == 0, res.output
    card = DatasetLayout(out).read_card()
    assert card["source"]["params"]["pack_shares"] == {"cylindrical": 0.03, "prismatic": 1.0}
    kinds = {m["class"]: set() for m in card["images"].values()}
    for m in card["images"].values():
        kinds[m["class"]].add(m["pose"][0].get("pack"))
    assert kinds["prismatic"] == {"module"} and kinds["pouch"] == {None}

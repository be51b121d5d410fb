"""The bias suite end to end on tiny models trained here, through the function and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evbattery.core.config import CLASSES, IMAGENET_MEAN, IMAGENET_STD
from evbattery.core.imageio import load_rgb
from evbattery.data.layout import DatasetLayout
from evbattery.data.transforms import normalize, resize_uint8
from evbattery.data.variants import VARIANT_NAMES
from evbattery.models.checkpoint import default_meta, save_checkpoint
from evbattery.models.classifier import build_classifier

SIZE = 64


def train_tiny(data: Path, kind: str, steps: int = 4) -> dict[str, torch.Tensor]:
    """A few Adam steps of ResNet-18 on the toy train split (photos or cutouts)."""
    torch.manual_seed(0)
    samples = DatasetLayout(data).samples("train")
    x = torch.stack([resize_uint8(load_rgb(s.path(kind)), SIZE) for s in samples])
    y = torch.tensor([CLASSES.index(s.cls) for s in samples])
    model, _ = build_classifier(len(CLASSES), "none")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(normalize(x, IMAGENET_MEAN, IMAGENET_STD)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict()


@pytest.fixture(scope="module")
def model_dir(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    # One short training serves both checkpoints (the suite's plumbing, not the models' skill, is under test).
    sd = train_tiny(toy_dataset, "images")
    for name in ("images", "cutouts"):
        save_checkpoint(d / f"best_model_{name}.pth", sd, {**default_meta(name), "image_size": SIZE, "name": name})
    # A real (untrained) segmenter: its masks are poor, which is what [pred] is there to expose.
    from evbattery.models.segmenter import ARCH, build_segmenter

    torch.manual_seed(0)
    save_checkpoint(d / "segmenter.pth", build_segmenter().state_dict(),
                    {"name": "segmenter", "arch": ARCH, "task": "segmentation", "image_size": SIZE})
    return d


@pytest.fixture(scope="module")
def model_dir_no_segmenter(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models_noseg")
    for name in ("images", "cutouts"):
        (d / f"best_model_{name}.pth").write_bytes((model_dir / f"best_model_{name}.pth").read_bytes())
    return d


@pytest.fixture(scope="module")
def result(toy_dataset: Path, model_dir: Path):
    from evbattery.evaluation.bias import run_bias_suite

    return run_bias_suite(toy_dataset, model_dir, split="test", seed=3, cam_limit=8, n_examples=2, progress=False)


def test_suite_scores_every_model_on_every_variant(result) -> None:
    s = result.summary
    assert s["n_images"] == 18 and s["variants"] == list(VARIANT_NAMES)
    assert list(s["evaluations"]) == ["images", "cutouts[true]", "cutouts[pred]"]
    assert s["notes"] == [] and 0.0 <= s["segmenter_iou_original"] <= 1.0
    for e in s["evaluations"].values():
        assert set(e["accuracy"]) == set(VARIANT_NAMES)
        assert all(0.0 <= a <= 1.0 for a in e["accuracy"].values())
        assert e["bg_gap"] == pytest.approx(e["accuracy"]["mixed_same"] - e["accuracy"]["mixed_rand"])
        assert set(e["groups"]) == {f"{c}/{f}" for c in CLASSES for f in ("dark", "light")}
        assert sum(g["n"] for g in e["groups"].values()) == 18
        assert e["worst_group"]["accuracy"] == min(g["accuracy"] for g in e["groups"].values())
        noise = e["worst_group_noise"]
        correct = sum(round(g["accuracy"] * g["n"]) for g in e["groups"].values())
        assert noise["pooled"] == pytest.approx(correct / 18)
        assert noise["observed_deficit"] == pytest.approx(noise["pooled"] - e["worst_group"]["accuracy"])
        assert noise["n_groups"] == 6 and 0.0 <= noise["expected_deficit"] <= noise["null_deficit_p95"] + 1e-12
        assert e["gradcam_inside"]["n"] == 8 and 0.0 <= e["gradcam_inside"]["mean"] <= 1.0


def test_true_mask_cutouts_are_blind_to_the_background(result) -> None:
    # With the true mask, Original, Only-FG and every Mixed variant give the cutout model the same pixels.
    acc = result.summary["evaluations"]["cutouts[true]"]["accuracy"]
    assert acc["original"] == acc["only_fg"] == acc["mixed_same"] == acc["mixed_rand"] == acc["mixed_next"]
    assert result.summary["evaluations"]["cutouts[true]"]["bg_gap"] == 0.0


def test_agreement_and_examples(result) -> None:
    pairs = result.summary["agreement_original"]
    assert [(p["a"], p["b"]) for p in pairs] == [("images", "cutouts[true]"), ("images", "cutouts[pred]"),
                                                 ("cutouts[true]", "cutouts[pred]")]
    pair = pairs[0]
    assert pair["n"] == 18
    assert pair["a_wrong"] + pair["b_wrong"] + pair["both_wrong"] == pair["disagreements"]
    assert len(result.examples) == 2
    ex = result.examples[0]
    assert set(ex["variants"]) == set(VARIANT_NAMES)
    assert ex["overlays"]["images"]["original"].dtype == np.uint8


def test_report_files(result, tmp_path: Path) -> None:
    from evbattery.evaluation.bias_report import write_bias_report

    paths = write_bias_report(result, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"split", "n_images", "variants", "evaluations", "agreement_original", "notes", "figures"} <= set(report)
    assert report["evaluations"]["images"]["accuracy"] == result.summary["evaluations"]["images"]["accuracy"]
    md = (tmp_path / "report.md").read_text()
    assert "| model | Original | Only-FG" in md and "cutouts[true]" in md and "Worst" not in md.split("\n")[0]
    noise_rows = md.split("## Worst group against sampling noise")[1].split("\n## ")[0]
    for label, e in result.summary["evaluations"].items():
        assert f"| {label} | {e['worst_group_noise']['pooled'] * 100:.1f} |" in noise_rows
    for name in ("accuracy_by_variant.png", "examples_gradcam.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["markdown"] == tmp_path / "report.md"


def test_home_families_in_the_card_split_groups_into_home_and_other(toy_dataset: Path, model_dir: Path,
                                                                     tmp_path: Path) -> None:
    import shutil

    from evbattery.evaluation.bias import run_bias_suite
    from evbattery.evaluation.bias_report import write_bias_report

    data = tmp_path / "biased"
    shutil.copytree(toy_dataset, data)
    layout = DatasetLayout(data)
    homes = {"cylindrical": ["light"], "pouch": ["dark"], "prismatic": ["light"]}
    layout.write_card({**layout.read_card(), "home_families": homes})
    res = run_bias_suite(data, model_dir, split="test", seed=3, cam_limit=4, n_examples=1, progress=False)
    entry = res.summary["evaluations"]["images"]
    acc = {g: v["accuracy"] for g, v in entry["groups"].items()}
    home = [acc["cylindrical/light"], acc["pouch/dark"], acc["prismatic/light"]]
    other = [acc["cylindrical/dark"], acc["pouch/light"], acc["prismatic/dark"]]
    split = entry["home_vs_other"]
    assert split["home"] == pytest.approx(np.mean(home)) and split["other"] == pytest.approx(np.mean(other))
    assert split["n_home_groups"] == split["n_other_groups"] == 3
    assert split["null"] is None  # cylindrical and prismatic share 'light': no disjoint assignment to permute
    # Mixed-Rand regrouped by the donor background's family: the groups hold every Mixed-Rand photo once.
    donor = entry["mixed_rand_by_donor"]["groups"]
    assert sum(g["n"] for g in donor.values()) == entry["n"]
    assert sum(g["accuracy"] * g["n"] for g in donor.values()) / entry["n"] == pytest.approx(
        entry["accuracy"]["mixed_rand"])
    # ... and by the family of the photo each cell was cut from: the Original groups, on Mixed-Rand photos.
    cell = entry["mixed_rand_by_cell"]["groups"]
    assert {g: v["n"] for g, v in cell.items()} == {g: v["n"] for g, v in entry["groups"].items()}
    assert sum(g["accuracy"] * g["n"] for g in cell.values()) / entry["n"] == pytest.approx(
        entry["accuracy"]["mixed_rand"])

    layout.write_card({**layout.read_card(), "home_families": {"cylindrical": ["light"], "pouch": ["dark"]}})
    res = run_bias_suite(data, model_dir, split="test", seed=3, cam_limit=4, n_examples=1, progress=False)
    entry = res.summary["evaluations"]["images"]
    null = entry["home_vs_other"]["null"]  # two assignments: the card's and its swap
    assert null["exact"] and null["n_assignments"] == 2 and null["observed"] == entry["home_vs_other"]["gap"]
    assert entry["mixed_rand_by_donor"]["null"]["n_assignments"] == 2
    write_bias_report(res, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Home vs other backgrounds" in md and "| images | Mixed-Rand by donor |" in md
    assert "| images | Mixed-Rand by cell |" in md


def test_mixed_rand_by_cell_family_finds_bias_carried_by_the_cell() -> None:
    """A model right exactly when the cell was cut from a home-background photo: grouped by the cell's own
    family the gap is the whole 100 points; grouped by the (random) donor background's family it is ~0."""
    from types import SimpleNamespace

    from evbattery.evaluation.bias import mixed_rand_family_split

    rng = np.random.default_rng(0)
    fams = list("abcdefghi")  # 9 families, 3 home families per class: 1,680 assignments to permute
    homes = {"x": fams[0:3], "y": fams[3:6], "z": fams[6:9]}
    classes = ["x", "y", "z"]
    labels = np.repeat([0, 1, 2], 300)
    families = [fams[i % 9] for i in range(900)]
    data = SimpleNamespace(classes=classes, labels=labels, families=families, home_families=homes)
    donors = rng.integers(0, 900, 900)
    home = np.array([families[i] in homes[classes[y]] for i, y in enumerate(labels)])
    preds = np.where(home, labels, (labels + 1) % 3)
    by_cell = mixed_rand_family_split(data, donors, preds, "cell")
    by_donor = mixed_rand_family_split(data, donors, preds, "donor")
    assert by_cell["home_vs_other"]["gap"] == pytest.approx(1.0)
    assert abs(by_donor["home_vs_other"]["gap"]) < 0.1
    assert by_cell["null"]["p_bias"] < 0.01 < by_donor["null"]["p_bias"]
    with pytest.raises(ValueError, match="donor or cell"):
        mixed_rand_family_split(data, donors, preds, "photo")


def test_bias_cli_without_segmenter(toy_dataset: Path, model_dir_no_segmenter: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from evbattery.cli import app

    r = CliRunner().invoke(app, ["bias", "--data", str(toy_dataset), "--model-dir", str(model_dir_no_segmenter),
                                 "--out", str(tmp_path / "bias"), "--limit", "6", "--cam-limit", "2",
                                 "--tracker", "wandb", "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    assert "Background bias" in r.output and "no segmenter" in r.output
    report = json.loads((tmp_path / "bias" / "report.json").read_text())
    assert report["n_images"] == 6 and list(report["evaluations"]) == ["images", "cutouts[true]"]
    # The tracker's plain files get the same numbers (W&B itself is disabled in tests).
    (metrics_file,) = (tmp_path / "runs").glob("*/metrics.jsonl")
    logged = json.loads(metrics_file.read_text().splitlines()[0])
    assert logged["bias/images/bg_gap"] == pytest.approx(report["evaluations"]["images"]["bg_gap"])


def test_bias_cli_folders_default_to_the_evbattery_variables(toy_dataset: Path, model_dir_no_segmenter: Path,
                                                             tmp_path: Path) -> None:
    """With EVBATTERY_* set and no flags, the suite reads and writes where the variables say (as the demo,
    the UI and the API do), not in ./reports, ./model, ./data/processed."""
    from typer.testing import CliRunner

    from evbattery.cli import app

    env = {"EVBATTERY_DATA_DIR": str(toy_dataset), "EVBATTERY_MODEL_DIR": str(model_dir_no_segmenter),
           "EVBATTERY_REPORTS_DIR": str(tmp_path / "rep"), "EVBATTERY_RUNS_DIR": str(tmp_path / "runs")}
    r = CliRunner().invoke(app, ["bias", "--limit", "6", "--cam-limit", "2", "--tracker", "wandb"], env=env)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "rep" / "bias" / "report.json").read_text())
    assert report["n_images"] == 6 and report["data_dir"] == str(toy_dataset)
    assert list((tmp_path / "runs").glob("*/metrics.jsonl"))
    r = CliRunner().invoke(app, ["bias", "--tracker", "none"], env={**env, "EVBATTERY_DATA_DIR": str(tmp_path / "gone")})
    assert r.exit_code != 0 and "gone does not exist" in r.output


def test_bias_cli_errors_name_the_problem(toy_dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from evbattery.cli import app

    r = CliRunner().invoke(app, ["bias", "--data", str(toy_dataset), "--model-dir", str(tmp_path / "none"),
                                 "--out", str(tmp_path / "o"), "--tracker", "none"])
    assert r.exit_code != 0 and "no best_model_<name>.pth" in r.output
    r = CliRunner().invoke(app, ["bias", "--data", str(tmp_path / "missing"), "--tracker", "none"])
    assert r.exit_code != 0 and "does not exist" in r.output


def test_sweep_skips_finished_levels_and_plots_every_model(result, tmp_path: Path) -> None:
    from evbattery.evaluation.bias_report import write_bias_report
    from evbattery.experiments.sweep import PROFILES, level_dir, run_sweep

    for rho in (0.0, 0.9):  # finished levels: run_sweep must neither generate nor train anything
        write_bias_report(result, level_dir(tmp_path, rho) / "bias")
    summary = run_sweep([0.0, 0.9], PROFILES["smoke"], tmp_path)
    assert list(summary["levels"]) == ["0", "0.9"]
    h = summary["levels"]["0.9"]["images"]
    e = result.summary["evaluations"]["images"]
    assert h == {"original": e["accuracy"]["original"], "mixed_rand": e["accuracy"]["mixed_rand"],
                 "worst_group": e["worst_group"]["accuracy"], "bg_gap": e["bg_gap"]}
    assert set(summary["levels"]["0"]) == {"images", "cutouts[true]", "cutouts[pred]"}
    assert not (tmp_path / "rho_0" / "data").exists()
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 0.9 | images |" in (tmp_path / "sweep.md").read_text()


def test_quick_profile_plan_fits_twenty_minutes() -> None:
    from evbattery.experiments.sweep import PROFILES, estimate_seconds

    assert estimate_seconds(PROFILES["quick"], 4) <= 20 * 60
    assert estimate_seconds(PROFILES["full"], 4) > estimate_seconds(PROFILES["quick"], 4)

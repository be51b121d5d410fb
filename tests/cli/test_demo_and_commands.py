"""Happy paths of the commands that had none (issue 25): `evbattery demo` (re-run skipping, the folders its child
commands get, a port in use), `data cutouts`, `bench infer`, `serve` and `ui`.

Models are hand-built colour readers (tests/known_models.py, no training); data the toy dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from known_models import photo, write_colour_readers
from typer.testing import CliRunner

from evbattery.cli import app
from evbattery.core.imageio import load_rgb, save_png
from evbattery.data.layout import DatasetLayout
from evbattery.experiments.servers import free_port, stop, wait_until_up
from evbattery.models.checkpoint import save_checkpoint


def _segmenter(path: Path) -> None:
    """An untrained (but real) segmenter checkpoint: enough for the steps that load one."""
    from evbattery.models.segmenter import ARCH, build_segmenter

    torch.manual_seed(0)
    save_checkpoint(path, build_segmenter().state_dict(), {"name": "segmenter", "arch": ARCH, "task": "segmentation",
                                                          "image_size": 32})


def _env(data: Path, models: Path, reports: Path, **extra: str) -> dict[str, str]:
    return {"EVBATTERY_DATA_DIR": str(data), "EVBATTERY_MODEL_DIR": str(models), "EVBATTERY_REPORTS_DIR": str(reports),
            "EVBATTERY_RUNS_DIR": str(reports.parent / "runs"), **extra}


@pytest.fixture()
def built(toy_dataset: Path, tmp_path: Path) -> dict[str, Path]:
    """A demo whose every step is already done: data, three models, evaluation and bias reports."""
    models = write_colour_readers(tmp_path / "model")
    _segmenter(models / "segmenter.pth")
    reports = tmp_path / "reports"
    (reports / "bias").mkdir(parents=True)
    (reports / "eval_cross_test.json").write_text("{}")
    (reports / "bias" / "report.md").write_text("# done\n")
    return {"data": toy_dataset, "models": models, "reports": reports}


def test_demo_rerun_skips_every_built_step(built: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, ["demo", "--no-serve"], env=_env(built["data"], built["models"], built["reports"]))
    assert res.exit_code == 0, res.output
    assert "0 of 6 steps to build" in res.output and "everything is built" in res.output
    assert res.output.count("(already built, skipped)") == 6
    assert (built["reports"] / "bias" / "report.md").read_text() == "# done\n"  # nothing was redone


def test_demo_port_in_use_is_named(built: dict[str, Path]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["demo", "--api-port", str(port), "--ui-port", str(free_port())],
                                 env=_env(built["data"], built["models"], built["reports"]))
        assert res.exit_code == 1
        assert f"port {port} is already in use" in res.output and "--api-port/--ui-port" in res.output
        ui = CliRunner().invoke(app, ["ui", "--port", str(port)])
        assert ui.exit_code == 1 and f"port {port} is already in use; pass --port" in ui.output


@pytest.mark.slow
def test_demo_child_commands_read_and_write_the_configured_folders(built: dict[str, Path], tmp_path: Path) -> None:
    """The evaluation and bias steps run as child processes: they must use EVBATTERY_* folders, not ./reports."""
    (built["reports"] / "eval_cross_test.json").unlink()
    shutil.rmtree(built["reports"] / "bias")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, **_env(built["data"], built["models"], built["reports"]), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "evbattery", "demo", "--no-serve"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=400, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 of 6" not in res.stderr and "2 of 6 steps to build" in res.stderr
    assert res.stderr.count("▶") == 2 and "▶ 5/6 evaluate" in res.stderr  # each step to build is announced
    assert (built["reports"] / "eval_cross_test.json").is_file()
    assert (built["reports"] / "bias" / "report.md").is_file()
    report = json.loads((built["reports"] / "bias" / "report.json").read_text())
    assert report["data_dir"] == str(built["data"]) and report["model_dir"] == str(built["models"])
    assert not (cwd / "reports").exists() and not (cwd / "data").exists()  # nothing went to the defaults


def test_data_cutouts_remakes_every_cutout(toy_dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(toy_dataset, data)
    layout = DatasetLayout(data)
    samples = layout.samples("val")
    for s in samples:
        s.cutout.unlink()
    res = CliRunner().invoke(app, ["data", "cutouts", "--split", "val"], env={"EVBATTERY_DATA_DIR": str(data)})
    assert res.exit_code == 0, res.output
    assert f"wrote {len(samples)} cutouts under {data}" in res.output
    for s in samples:
        cut, img, mask = load_rgb(s.cutout), load_rgb(s.image), np.asarray(load_rgb(s.mask))[..., 0]
        assert cut.shape == img.shape
        assert (cut[mask < 128] == 0).all()  # background filled with black
        assert np.array_equal(cut[mask >= 128], img[mask >= 128])  # the cell's own pixels
    assert not (data / "test" / "cutouts").exists() or layout.samples("test")[0].cutout.is_file()
    bad = CliRunner().invoke(app, ["data", "cutouts", "--data", str(data), "--split", "nope"])
    assert bad.exit_code == 1 and "unknown split(s) ['nope']" in bad.output


@pytest.mark.slow
def test_bench_infer_writes_latencies(tmp_path: Path) -> None:
    models = write_colour_readers(tmp_path / "model", image_size=32, names=(("images", "images"),))
    res = CliRunner().invoke(app, ["bench", "infer", "--model-dir", str(models), "--size", "32", "--iters", "3",
                                   "--warmup", "1"], env={"EVBATTERY_REPORTS_DIR": str(tmp_path / "reports")})
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "reports" / "bench_infer.json").read_text())
    rows = report["results"]
    assert {r["model"] for r in rows} == {"images"} and {r["backend"] for r in rows} >= {"torch"}
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"], r


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`evbattery serve` as a child process on a free port over colour-reading models."""
    models = write_colour_readers(tmp_path / "model")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "evbattery", "serve", "--port", str(port), "--model-dir", str(models)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ready", proc, timeout_s=90)
        yield f"http://127.0.0.1:{port}", models
    finally:
        stop(proc)


@pytest.mark.slow
def test_serve_answers_predictions(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _models = served
    img, mask = photo(2, 1)
    save_png(img, tmp_path / "p.png")
    save_png(mask, tmp_path / "m.png")
    files = {"file": ("p.png", (tmp_path / "p.png").read_bytes(), "image/png"),
             "mask": ("m.png", (tmp_path / "m.png").read_bytes(), "image/png")}
    both = httpx.post(f"{url}/predict/both", files=files, timeout=60).json()
    assert both["image_model"]["predicted_class"] == "prismatic" and both["cutout_model"]["predicted_class"] == "pouch"
    assert both["agree"] is False
    assert {m["name"] for m in httpx.get(f"{url}/models", timeout=30).json()["models"]} == {"images", "cutouts"}


@pytest.mark.slow
def test_ui_command_serves_the_streamlit_app(tmp_path: Path) -> None:
    import signal

    port = free_port()
    api = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        # its own process group: `evbattery ui` runs streamlit as a child, and both must go at the end
        proc = subprocess.Popen([sys.executable, "-m", "evbattery", "ui", "--port", str(port), "--api-url", api],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/_stcore/health", proc, timeout_s=90)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert f"UI on http://127.0.0.1:{port}  (API: {api})" in log.read_text()


def test_the_demo_probes_both_classifiers_and_fine_tunes_the_segmenter(tmp_path: Path) -> None:
    from evbattery.experiments.demo import QUICK, demo_steps, train_config

    cfgs = {k: train_config(k, tmp_path / "data", tmp_path / "model") for k in ("images", "cutouts", "masks")}
    for k, arch in (("images", "efficientnet_lite2"), ("cutouts", "efficientnet_lite0")):
        assert (cfgs[k].train_layers, cfgs[k].arch, cfgs[k].pretrained, cfgs[k].image_size) == \
            ("head", arch, "auto", 224)
    assert cfgs["masks"].train_layers == "all" and cfgs["masks"].segmenter_arch == "unet_efficientnet_lite0"
    assert cfgs["masks"].limit_train == QUICK["limit_train"]["masks"] < QUICK["n_train"]
    assert {c.data_dir for c in cfgs.values()} == {str(tmp_path / "data")}
    # the cutout probe is cut with the segmenter's masks too, so the segmenter is trained before it
    assert (cfgs["cutouts"].cutout_masks, cfgs["images"].cutout_masks) == ("both", "true")
    titles = [s.title for s in demo_steps(tmp_path / "data", tmp_path / "model", tmp_path / "reports")]
    assert titles.index("train the segmenter (masks for photos uploaded without one)") < next(
        i for i, t in enumerate(titles) if t.startswith("train the cutout classifier"))

#!/usr/bin/env python3
"""The prepared GPU job (issue 23): one command on the GPU machine runs the benchmarks and/or the full study
and prints ONE JSON object.

    python3 scripts/gpu_job.py bench            # bench train / infer / api on cuda at 224 px
    python3 scripts/gpu_job.py study            # bias-sweep --profile full --device cuda, rho 0 and 0.9
    python3 scripts/gpu_job.py all              # both
    python3 scripts/gpu_job.py all --smoke      # tiny data, 64 px, 1 epoch, device cpu: proves the plumbing

What it does:
  1. if .whl/ holds wheels and this is CPython 3.12 (the GPU machine), installs them into /tmp/site
     (pip install --no-index --no-deps --target /tmp/site .whl/*.whl; scripts/fetch_gpu_wheels.sh makes them);
  2. runs every step of the job as its own process (PYTHONPATH = src:/tmp/site), each under a wall-clock
     budget: a step that runs past it is killed and reported as timed out, the others still run;
  3. prints one JSON object {"job", "device", "env", "steps": {name: {...}}, "targets": {...}} and, when $OUT
     (or --out) is set, writes it with the reports (sweep.md/json/png, each level's bias report) there.

On the device machine (see the session notes for the `run` call): carry [".whl"], command
    PYTHONUNBUFFERED=1 python3 scripts/gpu_job.py bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SITE = Path("/tmp/site")

# name -> wall-clock budget in seconds (full runs; --smoke scales them down). The device machine allows 10 min
# per command: `bench` fits in ~6 min, `study` gets 9 min (the target is <= 10 min).
BENCH_STEPS = {"env": 60, "bench_data": 120, "bench_train": 150, "bench_infer": 90, "bench_api": 150,
               "bench_train_compile": 150}
STUDY_STEPS = {"env": 60, "study": 540}
JOBS = {"bench": BENCH_STEPS, "study": STUDY_STEPS, "all": {**BENCH_STEPS, **STUDY_STEPS}}


# -- the steps (each runs in a child process: `gpu_job.py --step NAME`) --------------------------------------
def step_env(a: argparse.Namespace) -> dict[str, Any]:
    import platform

    import torch

    from evbattery.core.devices import describe_device, resolve_device

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                           "cpus": len(os.sched_getaffinity(0)), "device": describe_device(resolve_device(a.device))}
    missing = []
    for mod in ("pydantic", "pydantic_settings", "fastapi", "uvicorn", "multipart", "pytorch_grad_cam", "httpx",
                "cv2", "sklearn", "matplotlib", "onnxruntime", "timm"):
        try:
            __import__(mod)
        except Exception as e:
            missing.append(f"{mod}: {type(e).__name__}: {e}")
    out["missing_modules"] = missing
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return out


def _bench_sizes(a: argparse.Namespace) -> dict[str, int]:
    if a.smoke:
        return {"size": 64, "n_train": 48, "batch": 8, "steps": 2, "iters": 3}
    return {"size": 224, "n_train": 12800, "batch": 256, "steps": 50, "iters": 100}


def step_bench_data(a: argparse.Namespace) -> dict[str, Any]:
    from evbattery.data.synth.generate import default_workers, generate_dataset

    z = _bench_sizes(a)
    t0 = time.perf_counter()
    generate_dataset(a.work / "bench_data", n_train=z["n_train"], n_val=8 if a.smoke else 64, n_test=0 if a.smoke
                     else 27, size=z["size"], seed=0, overwrite=True, progress=False)
    secs = time.perf_counter() - t0
    n = z["n_train"] + (8 if a.smoke else 64) + (0 if a.smoke else 27)
    # Checkpoints for bench infer / api: untrained ResNet-18s (their timings do not depend on the weights).
    from evbattery.core.config import CLASSES, IMAGENET_MEAN, IMAGENET_STD
    from evbattery.models.checkpoint import save_checkpoint
    from evbattery.models.classifier import build_classifier
    from evbattery.models.registry import model_path

    for name in ("images", "cutouts"):
        model, _ = build_classifier(len(CLASSES), "none")
        save_checkpoint(model_path(a.work / "bench_model", name), model.state_dict(),
                        {"name": name, "arch": "resnet18", "task": "classification", "input_type": name,
                         "classes": list(CLASSES), "image_size": z["size"], "mean": list(IMAGENET_MEAN),
                         "std": list(IMAGENET_STD), "pretrained": "none (bench)"})
    return {"photos": n, "size": z["size"], "seconds": round(secs, 1), "photos_per_s": round(n / secs, 1),
            "workers": default_workers()}


def step_bench_train(a: argparse.Namespace, compile: bool = False) -> dict[str, Any]:
    from evbattery.experiments.bench_train import run_bench

    z = _bench_sizes(a)
    return run_bench(a.work / "bench_data", size=z["size"], steps=z["steps"], batch_size=z["batch"], workers=0,
                     device=a.device, compile=compile)


def step_bench_train_compile(a: argparse.Namespace) -> dict[str, Any]:
    return step_bench_train(a, compile=True)


def step_bench_infer(a: argparse.Namespace) -> dict[str, Any]:
    from evbattery.experiments.bench_infer import bench_infer
    from evbattery.models.registry import discover_models

    z = _bench_sizes(a)
    # onnx: the GPU run times torch only (ONNX Runtime is the CPU backend), and so does the smoke run on the CPU,
    # which checks that path; exporting and quantizing ONNX here cost the smoke test 20 s (test_bench_infer
    # covers the ONNX timings).
    return bench_infer(discover_models(a.work / "bench_model"), size=z["size"], iters=z["iters"], warmup=5,
                       device=a.device, batch_sizes=(8,) if a.smoke else None, onnx=False if a.smoke else None)


def step_bench_api(a: argparse.Namespace) -> dict[str, Any]:
    from evbattery.experiments.bench_infer import bench_api

    return bench_api(a.work / "bench_model", seconds=2.0 if a.smoke else 20.0, concurrency=2 if a.smoke else 64,
                     backend="torch", device=a.device)


def step_study(a: argparse.Namespace) -> dict[str, Any]:
    from evbattery.experiments.sweep import PROFILES, run_sweep

    profile = PROFILES["smoke" if a.smoke else a.profile]
    rhos = [float(r) for r in a.levels.split(",")]
    t0 = time.perf_counter()
    summary = run_sweep(rhos, profile, a.work / "sweep", seed=0, device=a.device)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["timings_s"] = {}
    for rho in rhos:
        report = a.work / "sweep" / f"rho_{rho:g}" / "bias" / "report.json"
        if report.is_file():
            r = json.loads(report.read_text())
            summary["timings_s"][f"{rho:g}"] = r.get("timings_s")
            summary.setdefault("segmenter_iou", r.get("segmenter_iou_original"))
            summary.setdefault("worst_group_noise", {})[f"{rho:g}"] = {
                k: e.get("worst_group_noise") for k, e in r.get("evaluations", {}).items()}
    return summary


STEP_FUNCS = {"env": step_env, "bench_data": step_bench_data, "bench_train": step_bench_train,
              "bench_infer": step_bench_infer, "bench_api": step_bench_api,
              "bench_train_compile": step_bench_train_compile, "study": step_study}


# -- the parent: wheels, steps under budgets, one JSON ----------------------------------------------------------
def install_wheels(log: list[str]) -> str:
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if not wheels:
        return "no .whl/ wheels"
    if sys.version_info[:2] != (3, 12):
        return f"skipped: the wheels are for CPython 3.12, this is {sys.version.split()[0]}"
    # byte-compiled at install (pip's default): every step is a process of its own, and where
    # PYTHONDONTWRITEBYTECODE is set each would compile these packages again (Makefile, `compileall`)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, wheels)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    log.append(res.stdout[-2000:] + res.stderr[-2000:])
    return f"installed {len(wheels)} wheels into {SITE}" if res.returncode == 0 else \
        f"pip failed ({res.returncode}): {res.stderr.strip()[-500:]}"


def child_env() -> dict[str, str]:
    paths = [str(ROOT / "src")] + ([str(SITE)] if SITE.is_dir() else [])
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])), "PYTHONUNBUFFERED": "1",
            "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", "/tmp/mpl"), "WANDB_MODE": "disabled"}


def run_step(name: str, budget: float, a: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    result_file = a.work / f"step_{name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--device", a.device, "--work",
           str(a.work), "--profile", a.profile, "--levels", a.levels] + (["--smoke"] if a.smoke else [])
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n===== {name} (budget {budget:.0f} s) =====\n")
        log.flush()
        proc = subprocess.Popen(cmd, env=child_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=budget)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the step and its children (uvicorn servers, generator workers)
            rc, timed_out = proc.wait(), True
    out: dict[str, Any] = {"ok": rc == 0 and result_file.is_file(), "seconds": round(time.perf_counter() - t0, 1),
                           "budget_s": budget, "timed_out": timed_out, "returncode": rc}
    if result_file.is_file():
        out["result"] = json.loads(result_file.read_text())
    elif not timed_out:
        out["error"] = tail(log_path, 1500)
    return out


def tail(path: Path, n: int) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def targets(steps: dict[str, Any]) -> dict[str, Any]:
    """The issue's 'done when' numbers, read off the results (None where a step did not produce them)."""
    t: dict[str, Any] = {}
    bt = _get(steps, "bench_train", "result")
    if bt:
        t["train_img_per_s"] = round(bt["fast_img_per_s"], 1)
        t["train_img_per_s_ge_15000"] = bt["fast_img_per_s"] >= 15000
        t["train_mfu_pct"] = bt.get("mfu_pct")
        t["loop_vs_model_step"] = round(bt["loop_vs_model_step"], 3)
        t["loop_ge_90pct_of_model_step"] = bt["loop_vs_model_step"] >= 0.9
    btc = _get(steps, "bench_train_compile", "result")
    if btc:
        t["train_img_per_s_compiled"] = round(btc["fast_img_per_s"], 1)
    api = _get(steps, "bench_api", "result", "services", "evbattery")
    if api:
        t["api_rps"], t["api_p99_ms"], t["api_errors"] = api["rps"], api["p99_ms"], api["errors"]
        t["api_ok"] = api["rps"] >= 500 and api["p99_ms"] <= 150 and api["errors"] == 0
    study = _get(steps, "study", "result")
    if study:
        lv = study.get("levels", {})
        t["study_seconds"] = study.get("seconds")
        t["study_le_600_s"] = study.get("seconds") is not None and study["seconds"] <= 600
        r0, r9 = lv.get("0", {}), lv.get("0.9", {})
        img0 = _get(r0, "images", "original")
        cut0 = _get(r0, "cutouts[true]", "original")
        t["rho0_images_original"], t["rho0_cutouts_original"] = img0, cut0
        t["rho0_both_ge_99"] = None if img0 is None or cut0 is None else img0 >= 0.99 and cut0 >= 0.99
        t["segmenter_iou"] = study.get("segmenter_iou")
        t["segmenter_iou_ge_095"] = None if t["segmenter_iou"] is None else t["segmenter_iou"] >= 0.95
        gap_img, gap_deb = _get(r9, "images", "bg_gap"), _get(r9, "images_debiased", "bg_gap")
        deb_orig = _get(r9, "images_debiased", "original")
        t["rho09_images_bg_gap_pts"] = None if gap_img is None else round(100 * gap_img, 1)
        t["rho09_debiased_bg_gap_pts"] = None if gap_deb is None else round(100 * gap_deb, 1)
        t["rho09_images_bg_gap_ge_15"] = None if gap_img is None else 100 * gap_img >= 15
        t["rho09_debiased_bg_gap_le_2"] = None if gap_deb is None else 100 * gap_deb <= 2
        t["rho09_debiased_original_within_1pt_of_rho0_images"] = (
            None if deb_orig is None or img0 is None else abs(deb_orig - img0) <= 0.01)
        t["rho09_debiased_worst_group"] = _get(r9, "images_debiased", "worst_group")
        t["rho09_debiased_worst_group_noise"] = _get(study, "worst_group_noise", "0.9", "images_debiased")
    return t


def collect_reports(a: argparse.Namespace, out: Path, summary_path: Path, log_path: Path) -> list[str]:
    """At most 8 files, flat: the JSON, the log, the sweep report and each level's bias report."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(summary_path, out / "gpu_job.json")
    shutil.copy2(log_path, out / "gpu_job.log")
    copied = ["gpu_job.json", "gpu_job.log"]
    sweep = a.work / "sweep"
    for f in ("sweep.md", "sweep.json", "sweep.png"):
        if (sweep / f).is_file():
            shutil.copy2(sweep / f, out / f)
            copied.append(f)
    for level in sorted(sweep.glob("rho_*")) if sweep.is_dir() else []:
        report = level / "bias" / "report.md"
        if report.is_file() and len(copied) < 8:
            shutil.copy2(report, out / f"bias_{level.name}.md")
            copied.append(f"bias_{level.name}.md")
    return copied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", nargs="?", choices=sorted(JOBS), default="all")
    p.add_argument("--smoke", action="store_true", help="tiny data, 64 px, 1 epoch, device cpu (CPU check)")
    p.add_argument("--device", default=None, help="default cuda (cpu with --smoke)")
    p.add_argument("--profile", default="full", help="sweep profile of the study (default full)")
    p.add_argument("--levels", default="0,0.9", help="rho levels of the study")
    p.add_argument("--out", default=os.environ.get("OUT"), help="where the JSON and reports go (default $OUT)")
    p.add_argument("--work", default=None, help="scratch folder (default /tmp/evbattery_gpu_job)")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every step's budget")
    p.add_argument("--step", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.device = a.device or ("cpu" if a.smoke else "cuda")
    a.work = Path(a.work or "/tmp/evbattery_gpu_job").resolve()
    a.work.mkdir(parents=True, exist_ok=True)

    if a.step:  # child: one step, its result to <work>/step_<name>.json
        os.chdir(a.work)  # reports/ and runs/ of the library land in the scratch folder
        result = STEP_FUNCS[a.step](a)
        (a.work / f"step_{a.step}.json").write_text(json.dumps(result, indent=1, default=str))
        return 0

    t0 = time.perf_counter()
    setup_log: list[str] = []
    wheels = install_wheels(setup_log)
    log_path = a.work / "gpu_job.log"
    log_path.write_text("\n".join(setup_log))
    steps: dict[str, Any] = {}
    for name, budget in JOBS[a.job].items():
        if a.smoke and name == "bench_train_compile":
            continue  # torch.compile on a small CPU takes minutes; the GPU run measures it
        budget = budget * a.budget_scale  # upper bounds, far above a healthy step's time (also on a loaded CPU)
        if name == "study" and a.smoke:
            budget = max(budget, 300 * a.budget_scale)
        steps[name] = run_step(name, budget, a, log_path)
    summary = {"job": a.job, "smoke": a.smoke, "device": a.device, "wheels": wheels,
               "env": _get(steps, "env", "result"), "seconds": round(time.perf_counter() - t0, 1),
               "targets": targets(steps), "steps": {k: v for k, v in steps.items() if k != "env"},
               "failed": {k: {f: v.get(f) for f in ("seconds", "budget_s", "timed_out", "returncode", "error")}
                          for k, v in steps.items() if not v["ok"]}}
    summary_path = a.work / "gpu_job.json"
    summary_path.write_text(json.dumps(summary, indent=1, default=str))
    if a.out:
        summary["files"] = collect_reports(a, Path(a.out), summary_path, log_path)
    print(json.dumps(summary, default=str))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""`evbattery bench ...`: benchmarks that print JSON and a table and write reports/bench_*.json."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer

from evbattery.cli.app import DataDir, Device, bench_app, use_device
from evbattery.core.console import fail, info, print_json, table
from evbattery.training.config import DEFAULT_WORKERS

# Pass marks of `bench synth-difficulty`: a colour-histogram baseline must stay below these accuracies
DIFFICULTY_LIMITS = {"images": 0.50, "cutouts": 0.55}


@bench_app.command("train")
def bench_train_cmd(
    data: Path = DataDir,
    size: int = typer.Option(128, help="Image side for both loops."),
    steps: int = typer.Option(8, help="Timed steps of the fast loop (batch --batch-size); the naive loop runs 3x as many."),
    batch_size: int = typer.Option(32, help="Batch size of this project's loop."),
    workers: int = typer.Option(DEFAULT_WORKERS, help="DataLoader workers of this project's loop (training's default)."),
    device: str = Device,
    compile: bool = typer.Option(False, "--compile/--no-compile", help="Also time the torch.compile'd model."),
) -> None:
    """Images/s of this training loop vs the seed's naive loop, and % of the machine's compute limit."""
    dev = use_device(device)
    from evbattery.data.layout import DatasetError
    from evbattery.experiments.bench_train import run_bench

    try:
        res = run_bench(data, size=size, steps=steps, batch_size=batch_size, workers=workers,
                        device=dev, compile=compile)
    except (DatasetError, ValueError) as e:
        fail(str(e))
    from evbattery.core.io import write_json_report

    path = write_json_report("bench_train", res)
    print_json(res)
    table(f"training throughput @ {size}px -> {path}", ["loop", "img/s"],
          [["naive (batch 4, fp32, decode every step, no workers)", res["naive_img_per_s"]],
           [f"evbattery (batch {batch_size}, cached, {workers} workers, {res['precision']})", res["fast_img_per_s"]],
           ["the model's own step (fixed in-memory batch, no data pipeline)", res["model_step_img_per_s"]],
           [f"compute limit (peak {res['peak_precision']} matmul / FLOPs per image)", res["limit_img_per_s"]]], to_stderr=True)
    info(f"speed-up {res['speedup']:.2f}x (target >= 3x); {res['pct_of_limit']:.0f}% of the compute limit; the loop runs "
         f"at {100 * res['loop_vs_model_step']:.0f}% of the model's own step")


@bench_app.command("infer")
def bench_infer_cmd(model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder."),
                    size: int = typer.Option(224, help="Input side in pixels."),
                    iters: int = typer.Option(50, min=2, help="Timed runs per model and backend."),
                    warmup: int = typer.Option(5, min=0, help="Untimed warm-up runs."),
                    device: str = Device) -> None:
    """Per-model latency (p50/p99 ms, batch 1): torch, ONNX Runtime fp32 and int8; reports/bench_infer.json."""
    dev = use_device(device)
    from evbattery.core.config import get_settings
    from evbattery.core.io import write_json_report
    from evbattery.experiments.bench_infer import bench_infer
    from evbattery.models.registry import discover_models

    model_dir = model_dir or get_settings().model_dir
    found = discover_models(model_dir)
    if not found:
        fail(f"{model_dir}: no best_model_<name>.pth checkpoints")
    result = bench_infer(found, size=size, iters=iters, warmup=warmup, device=dev)
    path = write_json_report("bench_infer", result)
    print_json(result)
    table(f"inference latency at {size} px, batch 1 (ms; target p50 <= {result['target_p50_ms']:g})",
          ["model", "backend", "precision", "p50", "p99", "target"],
          [(r["model"], r["backend"], r["precision"], r["p50_ms"], r["p99_ms"], "met" if r["meets_target"] else "-")
           for r in result["results"]], to_stderr=True)
    info(f"wrote {path}")


@bench_app.command("api")
def bench_api_cmd(model_dir: Path = typer.Option(None, "--model-dir", help="Checkpoints folder."),
                  seconds: float = typer.Option(30.0, help="Load duration per server."),
                  concurrency: int = typer.Option(8, min=1, help="Requests in flight."),
                  backend: str = typer.Option(None, help="Backend of the evbattery service: auto | torch | "
                                              "onnx | onnx-int8 (the onnx ones exported to a temporary folder for "
                                              "the run). Default: "
                                              "torch on a GPU, onnx-int8 on a CPU."),
                  data: Path = typer.Option(None, "--data", help="Dataset to calibrate int8 on (default "
                                            "$EVBATTERY_DATA_DIR or data/processed)."),
                  size: int = typer.Option(None, "--size", min=16, help="Serve the models at this input side "
                                           "(e.g. 224) instead of the size they were trained at."),
                  device: str = Device,
                  max_batch: int = typer.Option(None, "--max-batch", min=1, help="Largest batch the service's "
                                                "lanes form (default: 64 on a GPU).")) -> None:
    """Requests/s and p50/p99 of POST /predict/both: evbattery service vs a naive one (same run)."""
    dev = use_device(device)
    from evbattery.core.config import get_settings
    from evbattery.core.io import write_json_report
    from evbattery.experiments.bench_infer import bench_api
    from evbattery.inference.service import BACKENDS

    if backend is not None and backend not in BACKENDS:
        fail(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    try:
        result = bench_api(model_dir, seconds=seconds, concurrency=concurrency, backend=backend,
                           data_dir=data or settings.data_dir, size=size, device=dev,
                           max_batch=max_batch)
    except RuntimeError as e:
        fail(str(e))
    path = write_json_report("bench_api", result)
    print_json(result)
    table(f"POST /predict/both, concurrency {concurrency}, {seconds:g} s", ["service", "req/s", "p50 ms", "p99 ms",
          "errors"], [(k, v["rps"], v["p50_ms"], v["p99_ms"], v["errors"]) for k, v in result["services"].items()],
          to_stderr=True)
    info(f"throughput ratio {result['rps_ratio']:.2f}x; wrote {path}")


@bench_app.command("synth")
def bench_synth_cmd(
    n: int = typer.Option(240, "--n", help="Images to generate."),
    size: int = typer.Option(256, "--size", help="Image side."),
    workers: int = typer.Option(2, "--workers", help="Worker processes."),
) -> None:
    """Generation speed (images/s, images + masks + cutouts written)."""
    from evbattery.core.io import write_json_report
    from evbattery.data.synth.generate import generate_dataset

    if n < 3 or workers < 1:
        fail("--n must be >= 3 and --workers >= 1")
    import resource

    def cpu() -> float:  # this process + reaped worker processes
        return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        t0, c0 = time.perf_counter(), cpu()
        generate_dataset(Path(tmp) / "d", n_train=n, n_val=0, n_test=0, size=size, workers=workers, progress=True)
        dt, dc = time.perf_counter() - t0, cpu() - c0
    # the CPU is shared: CPU time per image says what idle cores would do, wall time what this run did
    res = {"images": n, "size": size, "workers": workers, "seconds": round(dt, 2),
           "images_per_s": round(n / dt, 1), "cpu_ms_per_image": round(1000 * dc / n, 1),
           "projected_images_per_s_idle": round(workers * n / max(dc, 1e-9), 1), "target_images_per_s": 100}
    path = write_json_report("bench_synth", res)
    print_json(res)
    table("synthetic generation", ["images", "size", "workers", "s", "img/s", "CPU ms/img", "img/s idle (proj.)"],
          [[n, size, workers, res["seconds"], res["images_per_s"], res["cpu_ms_per_image"],
            res["projected_images_per_s_idle"]]])
    info(f"wrote {path}")


@bench_app.command("synth-difficulty")
def bench_difficulty_cmd(
    n_train: int = typer.Option(900, "--n-train", help="Training images."),
    n_test: int = typer.Option(300, "--n-test", help="Test images."),
    size: int = typer.Option(128, "--size", help="Image side (colour statistics barely depend on it)."),
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0 = all CPUs)."),
) -> None:
    """Colour-histogram + logistic-regression baseline on ρ = 0 data (should stay near chance)."""
    from evbattery.core.io import write_json_report
    from evbattery.data.synth.difficulty import histogram_baseline
    from evbattery.data.synth.generate import generate_dataset

    with tempfile.TemporaryDirectory(prefix="synth_difficulty_") as tmp:
        data = generate_dataset(Path(tmp) / "d", n_train=n_train, n_val=0, n_test=n_test, size=size, bias=0.0,
                                seed=seed, workers=workers or None, progress=True)
        res = histogram_baseline(data)
    res.update({"size": size, "seed": seed, "bias": 0.0, "chance": round(1 / 3, 4), "limits": DIFFICULTY_LIMITS})
    res["pass"] = all(res[k]["test_accuracy"] <= v for k, v in DIFFICULTY_LIMITS.items())
    path = write_json_report("synth_difficulty", res)
    print_json(res)
    table("colour-histogram baseline (test accuracy)", ["input", "accuracy", "limit"],
          [[k, res[k]["test_accuracy"], v] for k, v in DIFFICULTY_LIMITS.items()])
    info(f"wrote {path}")
    if not res["pass"]:
        fail("colour statistics predict the class above the limit: the generator leaks the class")

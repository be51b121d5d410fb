"""`evbattery train`, `evbattery evaluate` and `evbattery bench train`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from evbattery.cli import DataDir, ModelDir, RunsDir, app, bench_app
from evbattery.console import fail, info, print_json, table
from evbattery.training.config import DEFAULT_WORKERS

ConfigFile = typer.Option(None, "--config", help="configs/*.py file of assignments (explicit flags win).")


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    config: Path = ConfigFile,
    input_type: str = typer.Option(os.environ.get("INPUT_TYPE", "images"), "--input-type", "-t",
                                   help="images | cutouts | masks (segmenter). Default: $INPUT_TYPE or images."),
    data: Path = DataDir, model_dir: Path = ModelDir,
    runs_dir: Path = RunsDir,
    epochs: int = typer.Option(10, help="Epochs."), batch_size: int = typer.Option(32, help="Batch size (per process)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    image_size: int = typer.Option(224, "--image-size", "--size", help="Square input side (full frame resized)."),
    workers: int = typer.Option(DEFAULT_WORKERS, help="DataLoader workers (default: 0 on a 2-core CPU, where workers slow training)."), seed: int = typer.Option(0, help="Random seed."),
    pretrained: str = typer.Option("auto", help="auto | imagenet | none | PATH (auto: ImageNet if cached)."),
    tracker: str = typer.Option("wandb", help="wandb (offline unless key + EVBATTERY_WANDB=online) | none."),
    fast: bool = typer.Option(True, help="channels_last (+ bf16 autocast where the CPU has native bf16)."),
    resume: bool = typer.Option(False, help="Continue from model/last_<name>.pth (same config)."),
    debias: str = typer.Option("none", help="none | bg-swap (background-randomised training)."),
    swap_prob: float = typer.Option(1.0, help="bg-swap probability per training sample (1: every photo on a random background; below 1 the home backgrounds still predict the class)."),
    swap_synth_share: float = typer.Option(0.25, help="bg-swap: share of swaps onto a freshly rendered background instead of another training photo's (whose own cell leaves traces)."),
    zoom_prob: float = typer.Option(0.0, help="Probability of an object-preserving zoom crop per sample (off by default)."),
    bg_fade_epochs: int = typer.Option(0, help="Images only: fade the background in from the cutout fill over the first N epochs (for a start from the cutout model; 0 = off)."),
    batch_augment: bool = typer.Option(True, help="Augment whole batches in the training loop (one grid_sample); --no-batch-augment: torchvision v2 per sample."),
    precise_bn: int = typer.Option(512, help="Recompute BatchNorm statistics on this many un-augmented training images after each epoch (0 = off)."),
    name: str = typer.Option("", help="Model name (default: input type, or images_debiased with bg-swap)."),
    limit_train: int = typer.Option(0, help="Use at most this many training images (0 = all)."),
    scheduler: str = typer.Option("cosine", help="cosine | step."),
    segmenter_arch: str = typer.Option("unet_resnet18", help="With -t masks: unet_resnet18 (full-resolution output) | lraspp_mobilenet_v3_large."),
    head: str = typer.Option("avgpool", help="Classifiers: avgpool (torchvision's) | mask_attention (attention pool taught the cell's mask in training; inference needs no mask)."),
    mask_loss_weight: float = typer.Option(1.0, help="With --head mask_attention: weight of the attention-vs-mask loss."),
    progress: bool = typer.Option(True, help="Progress bars and the summary table."),
) -> None:
    """Train a classifier (images / cutouts / debiased images) or the segmenter (masks)."""
    from evbattery.data.layout import DatasetError
    from evbattery.models.checkpoint import CheckpointError
    from evbattery.training.config import TrainConfig, load_config_file
    from evbattery.training.train import main

    values = {"input_type": input_type, "data_dir": str(data), "model_dir": str(model_dir),
              "runs_dir": str(runs_dir), "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "image_size": image_size, "workers": workers, "seed": seed, "pretrained": pretrained,
              "tracker": tracker, "fast": fast, "resume": resume,
              "debias": None if debias in ("none", "") else debias, "swap_prob": swap_prob,
              "swap_synth_share": swap_synth_share, "zoom_prob": zoom_prob,
              "bg_fade_epochs": bg_fade_epochs, "batch_augment": batch_augment, "precise_bn": precise_bn,
              "name": name or None,
              "limit_train": limit_train or None, "scheduler": scheduler,
              "segmenter_arch": segmenter_arch, "head": head, "mask_loss_weight": mask_loss_weight,
              "progress": progress}
    params = {"data_dir": "data"}
    try:
        if config is not None:
            for k, v in load_config_file(config).items():
                # typer vendors click, so compare the ParameterSource by name
                src = ctx.get_parameter_source(params.get(k, k))
                if getattr(src, "name", None) not in ("COMMANDLINE", "ENVIRONMENT"):
                    values[k] = v
        result = main(TrainConfig(**values))
    except (DatasetError, CheckpointError, ValueError, RuntimeError) as e:
        fail(str(e))
    print_json({k: v for k, v in result.items() if k != "history"})


@app.command("evaluate")
def evaluate_cmd(
    input_type: str = typer.Option(os.environ.get("INPUT_TYPE", "images"), "--input-type", "-t", "--model",
                                   help="Model name: images | cutouts | images_debiased | ... | segmenter (default $INPUT_TYPE)."),
    split: str = typer.Option("test", help="Split to evaluate."), data: Path = DataDir, model_dir: Path = ModelDir,
    cross: bool = typer.Option(False, help="Every model in --model-dir on both the images and the cutouts."),
    tracker: str = typer.Option("wandb", help="wandb | none."),
) -> None:
    """Accuracy, balanced accuracy, macro-F1, per-class report, confusion matrix and ECE on a split."""
    from evbattery.data.layout import DatasetError, DatasetLayout
    from evbattery.evaluation.evaluate import cross_evaluate, evaluate_model, write_eval_report
    from evbattery.inference.predictor import Predictor
    from evbattery.models.checkpoint import CheckpointError
    from evbattery.models.registry import discover_models, model_path
    from evbattery.reports import write_json_report

    layout = DatasetLayout(data)
    try:
        if cross:
            models = discover_models(model_dir)
            if not models:
                fail(f"no best_model_*.pth in {model_dir}; train a model first")
            res = cross_evaluate(models, layout, split)
            path = write_json_report(f"eval_cross_{split}", res)
            table(f"accuracy on {split} (models x inputs) -> {path}", ["model", *res["inputs"]],
                  [[m, *[res["accuracy"][m][k] for k in res["inputs"]]] for m in res["models"]])
            _track(tracker, f"eval-cross-{split}", {"split": split, "models": res["models"]},
                   {f"eval/{m}/{k}/accuracy": a for m, row in res["accuracy"].items() for k, a in row.items()})
            return
        if input_type in ("segmenter", "masks"):
            _evaluate_segmenter(model_dir, layout, split, tracker)
            return
        predictor = Predictor.from_checkpoint(model_path(model_dir, input_type))
        r = evaluate_model(predictor, layout, split)
    except (DatasetError, CheckpointError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    json_path, png = write_eval_report(r)
    table(f"{r['model']} on {split} {r['input']} ({r['n']} images) -> {json_path}", ["metric", "value"],
          [[k, r[k]] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece")])
    table("per class", ["class", "precision", "recall", "f1", "support"],
          [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in r["per_class"].items()])
    if r.get("by_cell_size"):
        table("accuracy by cell size (share of the frame covered by the mask)", ["cell area", "n", "accuracy", "95 % CI"],
              [[f"{b['area_from']:.0%}–{b['area_to']:.0%}", b["n"], b["accuracy"],
                f"{b['ci'][0]:.3f}–{b['ci'][1]:.3f}"] for b in r["by_cell_size"]])
    info(f"confusion matrix: {png}")
    t = _track(tracker, f"eval-{r['model']}-{split}", {"model": r["model"], "split": split, "checkpoint": r["checkpoint"]},
               {f"eval/{k}": r[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece")}, finish=False)
    if t is not None:
        cm = r["confusion"]
        y_true = [i for i, row in enumerate(cm) for j, n in enumerate(row) for _ in range(n)]
        y_pred = [j for i, row in enumerate(cm) for j, n in enumerate(row) for _ in range(n)]
        t.log_classification("eval", y_true, y_pred, r["classes"], r["per_class"])
        t.finish()


def _evaluate_segmenter(model_dir: Path, layout, split: str, tracker: str) -> None:
    """`evaluate --model segmenter`: IoU against the true masks at each photo's resolution."""
    from evbattery.evaluation.segmentation import evaluate_segmenter
    from evbattery.models.registry import segmenter_path
    from evbattery.models.segmenter import Segmenter
    from evbattery.reports import write_json_report

    path = segmenter_path(model_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no segmenter at {path}; train one with `evbattery train --input-type masks`")
    r = evaluate_segmenter(Segmenter.from_checkpoint(path), layout, split)
    out = write_json_report(f"eval_segmenter_{split}", r)
    pi = r["per_image"]
    table(f"segmenter ({r['arch']}, {r['image_size']} px) on {split} ({r['n']} photos) -> {out}", ["metric", "value"],
          [["IoU (pooled)", r["iou"]], ["pixel accuracy", r["pixel_accuracy"]], ["per-image IoU mean", pi["mean"]],
           ["per-image IoU median", pi["p50"]], ["per-image IoU 10th pct", pi["p10"]],
           ["photos with IoU < 0.5", pi["share_below_0.5"]]])
    _track(tracker, f"eval-segmenter-{split}", {"model": "segmenter", "split": split, "checkpoint": r["checkpoint"]},
           {"eval/iou": r["iou"], "eval/pixel_accuracy": r["pixel_accuracy"], "eval/per_image_iou_mean": pi["mean"]})


def _track(backend: str, run_name: str, config: dict, metrics: dict, finish: bool = True):
    """Log evaluation results to the tracker (files under runs/ always; W&B when enabled)."""
    from evbattery.config import get_settings
    from evbattery.training.tracking import Tracker, new_run_id

    t = Tracker(get_settings().runs_dir, new_run_id(run_name), config, backend=backend, job_type="eval")
    t.log(metrics)
    if finish:
        t.finish()
        return None
    return t


@bench_app.command("train")
def bench_train_cmd(
    data: Path = DataDir,
    size: int = typer.Option(128, help="Image side for both loops."),
    steps: int = typer.Option(8, help="Timed steps of the fast loop (batch --batch-size); the naive loop runs 3x as many."),
    batch_size: int = typer.Option(32, help="Batch size of this project's loop."),
    workers: int = typer.Option(DEFAULT_WORKERS, help="DataLoader workers of this project's loop (training's default)."),
) -> None:
    """Images/s of this training loop vs the seed's naive loop, and % of the machine's compute limit."""
    from evbattery.data.layout import DatasetError
    from evbattery.training.bench import run_bench

    try:
        res = run_bench(data, size=size, steps=steps, batch_size=batch_size, workers=workers)
    except (DatasetError, ValueError) as e:
        fail(str(e))
    from evbattery.reports import write_json_report

    path = write_json_report("bench_train", res)
    print_json(res)
    table(f"training throughput @ {size}px -> {path}", ["loop", "img/s"],
          [["naive (batch 4, fp32, decode every step, no workers)", res["naive_img_per_s"]],
           [f"evbattery (batch {batch_size}, cached, {workers} workers, {res['precision']})", res["fast_img_per_s"]],
           ["the model's own step (fixed in-memory batch, no data pipeline)", res["model_step_img_per_s"]],
           [f"compute limit (peak {res['peak_precision']} matmul / FLOPs per image)", res["limit_img_per_s"]]], to_stderr=True)
    info(f"speed-up {res['speedup']:.2f}x (target >= 3x); {res['pct_of_limit']:.0f}% of the compute limit; the loop runs "
         f"at {100 * res['loop_vs_model_step']:.0f}% of the model's own step")

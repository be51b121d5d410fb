"""`evbattery evaluate`: metrics of a model on a split (or every model x input kind), tracked."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from evbattery.cli.app import DataDir, Device, ModelDir, app, use_device
from evbattery.core.console import fail, info, table


@app.command("evaluate")
def evaluate_cmd(
    input_type: str = typer.Option(os.environ.get("INPUT_TYPE", "images"), "--input-type", "-t", "--model",
                                   help="Model name: images | cutouts | images_debiased | ... | segmenter (default $INPUT_TYPE)."),
    split: str = typer.Option("test", help="Split to evaluate."), data: Path = DataDir, model_dir: Path = ModelDir,
    cross: bool = typer.Option(False, help="Every model in --model-dir on both the images and the cutouts "
                              "(eval_cross_<split>.json, and each model x input report)."),
    tracker: str = typer.Option("wandb", help="wandb | none."),
    device: str = Device,
) -> None:
    """Accuracy, balanced accuracy, macro-F1, per-class report, confusion matrix and ECE on a split; or, with
    --data pointing at a folder of <class>/ photos without masks (real photos), every model on them."""
    dev = use_device(device)
    from evbattery.core.io import reports_dir, write_json_report
    from evbattery.data.layout import DatasetError, DatasetLayout
    from evbattery.evaluation.evaluate import cross_evaluate, evaluate_model, write_eval_report
    from evbattery.evaluation.photo_folder import is_photo_folder
    from evbattery.inference.cpu_onnx import attach_onnx_runtime
    from evbattery.inference.predictor import Predictor
    from evbattery.models.checkpoint import CheckpointError
    from evbattery.models.registry import discover_models, model_path

    photos = data / split if is_photo_folder(data / split) else data
    if is_photo_folder(photos):
        _evaluate_photo_folder(photos, model_dir, tracker, dev)
        return
    layout = DatasetLayout(data)
    try:
        if cross:
            models = discover_models(model_dir)
            if not models:
                fail(f"no best_model_*.pth in {model_dir}; train a model first")
            res = cross_evaluate(models, layout, split, device=dev, report_folder=reports_dir())
            path = write_json_report(f"eval_cross_{split}", res)
            table(f"accuracy on {split} (models x inputs) -> {path}", ["model", *res["inputs"]],
                  [[m, *[res["accuracy"][m][k] for k in res["inputs"]]] for m in res["models"]])
            _track(tracker, f"eval-cross-{split}", {"split": split, "models": res["models"]},
                   {f"eval/{m}/{k}/accuracy": a for m, row in res["accuracy"].items() for k, a in row.items()})
            return
        if input_type in ("segmenter", "masks"):
            _evaluate_segmenter(model_dir, layout, split, tracker, dev)
            return
        predictor = Predictor.from_checkpoint(model_path(model_dir, input_type), device=dev)
        attach_onnx_runtime(predictor, len(layout.require_split(split)))
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


def _evaluate_photo_folder(folder: Path, model_dir: Path, tracker: str, device=None) -> None:
    """`evaluate --data <folder of class subfolders>`: every model on real photos (cutouts via the segmenter)."""
    from evbattery.data.layout import DatasetError
    from evbattery.evaluation.photo_folder import evaluate_photo_folder, write_photo_report
    from evbattery.models.checkpoint import CheckpointError

    try:
        r = evaluate_photo_folder(folder, model_dir, device=device)
    except (DatasetError, CheckpointError) as e:
        fail(str(e))
    json_path, png = write_photo_report(r)
    for note in r["notes"] + r["skipped"]:
        info(note)
    counts = ", ".join(f"{c} {n}" for c, n in r["counts"].items())
    table(f"{r['n']} photos in {folder} ({counts}; chance 33 %) -> {json_path}",
          ["model", "input", "balanced acc", "95 % CI", *(f"recall {c}" for c in r["classes"]), "ECE",
           "wrong & unsure", "unfamiliar"],
          [[m, v["input"], v["balanced_accuracy"], f"{v['balanced_accuracy_ci'][0]:.3f}–{v['balanced_accuracy_ci'][1]:.3f}",
            *(v["recall"].get(c, {}).get("recall", float("nan")) for c in r["classes"]), v["ece"],
            f"{v['wrong_answers']['unsure']}/{v['wrong_answers']['n']}",
            f"{v['unfamiliar']:.0%}" if "unfamiliar" in v else "-"] for m, v in r["models"].items()])
    info(f"confusion matrices: {png}")
    _track(tracker, f"eval-photos-{folder.name}", {"folder": str(folder), "n": r["n"]},
           {f"eval_photos/{m}/balanced_accuracy": v["balanced_accuracy"] for m, v in r["models"].items()})


def _evaluate_segmenter(model_dir: Path, layout, split: str, tracker: str, device=None) -> None:
    """`evaluate --model segmenter`: IoU against the true masks at each photo's resolution."""
    from evbattery.core.io import write_json_report
    from evbattery.evaluation.segmentation import evaluate_segmenter
    from evbattery.inference.cpu_onnx import attach_onnx_runtime
    from evbattery.inference.segmenter import Segmenter
    from evbattery.models.registry import segmenter_path

    path = segmenter_path(model_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no segmenter at {path}; train one with `evbattery train --input-type masks`")
    seg = Segmenter.from_checkpoint(path, device=device)
    attach_onnx_runtime(seg, len(layout.require_split(split)))
    r = evaluate_segmenter(seg, layout, split)
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
    from evbattery.core.config import get_settings
    from evbattery.core.tracking import Tracker, new_run_id

    t = Tracker(get_settings().runs_dir, new_run_id(run_name), config, backend=backend, job_type="eval")
    t.log(metrics)
    if finish:
        t.finish()
        return None
    return t

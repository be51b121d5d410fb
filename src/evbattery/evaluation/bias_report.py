"""Files of the bias suite: report.json, report.md, accuracy_by_variant.png, examples_gradcam.png.

Figures use matplotlib's Agg backend (no display). The tracker (runs/<id>/ + W&B when enabled)
gets the headline numbers under bias/<model>/... and the figures.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from evbattery.core.io import atomic_write_text
from evbattery.core.tracking import Tracker, new_run_id
from evbattery.evaluation.bias import BiasResult

log = logging.getLogger(__name__)

VARIANT_TITLES = {"original": "Original", "only_fg": "Only-FG", "no_fg": "No-FG", "only_bg_t": "Only-BG-T",
                  "mixed_same": "Mixed-Same", "mixed_rand": "Mixed-Rand", "mixed_next": "Mixed-Next"}
FIGURES = ("accuracy_by_variant.png", "examples_gradcam.png")


def _pct(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(summary: dict[str, Any], path: Path) -> Path:
    """Grouped bars: accuracy per variant (x) for every evaluated model (bars)."""
    plt = _plt()
    evals, variants = summary["evaluations"], summary["variants"]
    width = 0.8 / max(len(evals), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(variants)), 4.5))
    for k, (label, e) in enumerate(evals.items()):
        xs = [i + (k - (len(evals) - 1) / 2) * width for i in range(len(variants))]
        ax.bar(xs, [100 * e["accuracy"][v] for v in variants], width, label=label)
    ax.axhline(100 / len(summary["classes"]), color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(variants)), [VARIANT_TITLES.get(v, v) for v in variants])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Accuracy per background variant ({summary['split']}, n={summary['n_images']})")
    ax.legend(fontsize=8, ncol=min(len(evals) + 1, 4))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_examples(result: BiasResult, path: Path) -> Path:
    """Grid: per example image, one row of the variants, then one row of Grad-CAM overlays per model."""
    plt = _plt()
    variants = result.summary["variants"]
    labels = list(result.summary["evaluations"])
    rows = [(ex, lab) for ex in result.examples for lab in [None, *labels]]
    fig, axes = plt.subplots(max(len(rows), 1), len(variants), figsize=(1.6 * len(variants), 1.6 * max(len(rows), 1)),
                             squeeze=False)
    for r, (ex, lab) in enumerate(rows):
        for c, v in enumerate(variants):
            ax = axes[r][c]
            img = ex["variants"].get(v) if lab is None else ex["overlays"].get(lab, {}).get(v)
            if img is not None:
                ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(VARIANT_TITLES.get(v, v), fontsize=8)
            if c == 0:
                ax.set_ylabel(ex["sample"].rsplit("/", 1)[-1] if lab is None else lab, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the one-screen table (percentages)."""
    variants = summary["variants"]
    cols = ["model", *[VARIANT_TITLES.get(v, v) for v in variants], "BG-Gap", "worst group", "CAM in mask"]
    rows = []
    for label, e in summary["evaluations"].items():
        wg = e.get("worst_group")
        rows.append([label, *[_pct(e["accuracy"][v]) for v in variants], _pct(e["bg_gap"]),
                     f"{_pct(wg['accuracy'])} ({wg['group']})" if wg else "–",
                     _pct(e["gradcam_inside"]["mean"])])
    return cols, rows


def render_markdown(summary: dict[str, Any]) -> str:
    """report.md: the tables, the agreement, the notes, and links to the figures."""
    cols, rows = summary_rows(summary)
    legend = ("Variants after Xiao et al. 2020 (Backgrounds Challenge); BG-Gap = acc(Mixed-Same) − acc(Mixed-Rand); "
              "worst group over (class × background family) on Original after Sagawa et al. 2020; "
              "CAM in mask = mean share of Grad-CAM (layer4) energy inside the true mask on Original. "
              "`name[true]`/`name[pred]` = a cutout model fed cutouts made with the true / segmenter mask. "
              "All numbers in %.")
    if summary.get("mixed_partner_rule"):
        legend += f" Mixed-Same / Mixed-Next backgrounds chosen by: {summary['mixed_partner_rule']}."
    md = [f"# Background-bias report ({summary['split']} split, {summary['n_images']} images)", "",
          f"Data: `{summary['data_dir']}` · models: `{summary['model_dir']}` · seed {summary['seed']}", "",
          legend, "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", "## Background-only accuracy", "", "| model | No-FG | Only-BG-T |", "|---|---|---|"]
    md += [f"| {k} | {_pct(e['bg_only_accuracy']['no_fg'])} | {_pct(e['bg_only_accuracy']['only_bg_t'])} |"
           for k, e in summary["evaluations"].items()]
    split = {k: e["home_vs_other"] for k, e in summary["evaluations"].items() if e.get("home_vs_other")}
    if split:
        md += ["", "## Home vs other backgrounds", "",
               "Mean accuracy over (class × family) groups whose family is one of the class's home families "
               "in train/val, and over the rest; a background shortcut scores high at home and low elsewhere. "
               "*Original* groups photos by their own background; *Mixed-Rand by donor* groups the Mixed-Rand "
               "photos (every cell on a random photo's background) by the family of the background behind the "
               "cell, *Mixed-Rand by cell* by the family of the photo the cell was cut from (a gap there means the "
               "cell's own pixels, e.g. its antialiased rim, carry its photo's background). Groups also differ for reasons that are not bias (a cell is harder to see on some "
               "textures; finite groups), so each gap is set against the gaps of every other assignment of "
               "home families of the same sizes (a permutation test): *by chance* is their central 95 %, "
               "*p bias* / *p anti* the share at least as high / as low as the card's.", "",
               "| model | groups by | home | other | gap | by chance | p bias | p anti |",
               "|---|---|---|---|---|---|---|---|"]
        for k, e in summary["evaluations"].items():
            rows_hv = [("Original", e.get("home_vs_other"))]
            for by in ("donor", "cell"):
                h = (e.get(f"mixed_rand_by_{by}") or {}).get("home_vs_other")
                rows_hv.append((f"Mixed-Rand by {by}", {**h, "null": e[f"mixed_rand_by_{by}"]["null"]} if h else None))
            for by, h in rows_hv:
                if not h:
                    continue
                nl = h.get("null")
                chance = f"{_pct(nl['null_low'])} … {_pct(nl['null_high'])}" if nl else "—"
                pb, pa = (f"{nl['p_bias']:.3g}", f"{nl['p_anti']:.3g}") if nl else ("—", "—")
                md.append(f"| {k} | {by} | {_pct(h['home'])} | {_pct(h['other'])} | {_pct(h['gap'])} | "
                          f"{chance} | {pb} | {pa} |")
    noise = {k: e["worst_group_noise"] for k, e in summary["evaluations"].items() if e.get("worst_group_noise")}
    if noise:
        md += ["", "## Worst group against sampling noise (Original)", "",
               "How far under the pooled accuracy the worst group falls, against how far it would fall by chance "
               "if every group had its class's pooled accuracy (exact binomial law of the minimum over the "
               "groups; a class the model finds harder is not a background effect). A deficit within the "
               "chance band is no evidence that any background is harder; the homogeneity test is a "
               "chi-square test that the groups of each class share one accuracy.", "",
               "| model | pooled | worst group (95 % CI) | deficit | by chance: mean / 95th pct | homogeneity p |",
               "|---|---|---|---|---|---|"]
        md += [f"| {k} | {_pct(w['pooled'])} | {_pct(w['worst_ci'][0])}–{_pct(w['worst_ci'][1])} "
               f"({w['worst_group']}, n ≥ {w['min_n']}) | {_pct(w['observed_deficit'])} | "
               f"{_pct(w['expected_deficit'])} / {_pct(w['null_deficit_p95'])} | {w['homogeneity_p']:.3g} |"
               for k, w in noise.items()]
    any_groups = [e for e in summary["evaluations"].values() if "groups" in e]
    if any_groups:
        groups = list(any_groups[0]["groups"])
        md += ["", "## Accuracy per group (Original)", "", "| group | n | " + " | ".join(summary["evaluations"]) + " |",
               "|" + "---|" * (len(summary["evaluations"]) + 2)]
        for g in groups:
            n = any_groups[0]["groups"][g]["n"]
            md.append(f"| {g} | {n} | " + " | ".join(_pct(e.get("groups", {}).get(g, {}).get("accuracy"))
                                                       for e in summary["evaluations"].values()) + " |")
    md += ["", "## Agreement on Original", "",
           "| a | b | agree | disagreements | a wrong (b right) | b wrong (a right) | both wrong |",
           "|---|---|---|---|---|---|---|"]
    md += [f"| {p['a']} | {p['b']} | {_pct(p['agreement'])} | {p['disagreements']} | {_pct(p['a_wrong_share'])} | "
           f"{_pct(p['b_wrong_share'])} | {_pct(p['both_wrong_share'])} |" for p in summary["agreement_original"]]
    md += ["", "## Grad-CAM energy inside the mask (Original)", "", "| model | mean | median | histogram (10 bins 0→1) |",
           "|---|---|---|---|"]
    md += [f"| {k} | {_pct(e['gradcam_inside']['mean'])} | {_pct(e['gradcam_inside']['median'])} | "
           f"{' '.join(map(str, e['gradcam_inside']['histogram']['counts']))} |"
           for k, e in summary["evaluations"].items()]
    if summary.get("segmenter_iou_original") is not None:
        md += ["", f"Segmenter mean IoU on Original: {_pct(summary['segmenter_iou_original'])}"]
    if summary["notes"]:
        md += ["", "## Notes", "", *[f"- {n}" for n in summary["notes"]]]
    md += ["", "![accuracy per variant](accuracy_by_variant.png)", "", "![examples](examples_gradcam.png)", ""]
    return "\n".join(md)


def _json_safe(obj: Any) -> Any:
    """NaN -> None so report.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_bias_report(result: BiasResult, out: Path) -> dict[str, Path]:
    """Write report.json, report.md and the figures into `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"accuracy_figure": plot_accuracy(result.summary, out / FIGURES[0]),
             "examples_figure": plot_examples(result, out / FIGURES[1])}
    summary = _json_safe({**result.summary, "figures": list(FIGURES)})
    atomic_write_text(out / "report.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "report.md", render_markdown(result.summary))
    paths.update(json=out / "report.json", markdown=out / "report.md")
    return paths


def log_to_tracker(summary: dict[str, Any], paths: dict[str, Path], runs_dir: Path, backend: str = "wandb") -> None:
    """Headline numbers under bias/<model>/... and the figures to the tracker (runs/<id>/ always; W&B if on)."""
    tracker = Tracker(runs_dir, new_run_id("bias"), {k: summary[k] for k in ("split", "data_dir", "model_dir",
                                                                              "seed", "n_images")},
                      backend=backend, job_type="bias")
    metrics: dict[str, Any] = {}
    for label, e in summary["evaluations"].items():
        metrics.update({f"bias/{label}/{v}": a for v, a in e["accuracy"].items()})
        metrics[f"bias/{label}/bg_gap"] = e["bg_gap"]
        if e.get("worst_group"):
            metrics[f"bias/{label}/worst_group"] = e["worst_group"]["accuracy"]
        if e.get("worst_group_noise"):
            metrics[f"bias/{label}/worst_group_excess_deficit"] = e["worst_group_noise"]["excess_deficit"]
        if e.get("home_vs_other"):
            metrics[f"bias/{label}/home_minus_other"] = e["home_vs_other"]["gap"]
            if e["home_vs_other"].get("null"):
                metrics[f"bias/{label}/home_minus_other_p_bias"] = e["home_vs_other"]["null"]["p_bias"]
        for by in ("donor", "cell"):
            if (e.get(f"mixed_rand_by_{by}") or {}).get("home_vs_other"):
                metrics[f"bias/{label}/{by}_home_minus_other"] = e[f"mixed_rand_by_{by}"]["home_vs_other"]["gap"]
        metrics[f"bias/{label}/gradcam_inside"] = e["gradcam_inside"]["mean"]
    tracker.log(_json_safe(metrics))
    tracker.log_images("bias", {k: p for k, p in paths.items() if str(p).endswith(".png")})
    tracker.summary(_json_safe(metrics))
    tracker.finish()

"""Bias report page: the figure and one verdict per model first, the full tables folded away.

Reads the files `evbattery bias` (reports/bias/), `evbattery evaluate` (reports/eval_*.json) and the bias
sweep (reports/sweep/) wrote; the verdicts come from ui/bias_summary.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from evbattery.core.config import get_settings
from evbattery.ui import bias_summary as bs

# Markdown image links point at files next to report.md; the PNGs are shown with st.image instead.
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")


def flat_metrics(obj: dict, prefix: str = "") -> dict[str, object]:
    """Scalars of a nested JSON object as {'a.b.c': value} (lists and long structures skipped)."""
    out: dict[str, object] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_metrics(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


def show_pngs(pngs: list[Path]) -> None:
    """PNGs two per row, captioned by file name."""
    for i in range(0, len(pngs), 2):
        for col, png in zip(st.columns(2), pngs[i:i + 2], strict=False):
            col.image(str(png), caption=png.stem.replace("_", " "), width="stretch")


def read_json(path: Path) -> tuple[object, str | None]:
    """(parsed JSON or None, why not)."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name}: unreadable ({e})"


def show_bias(bias_dir: Path) -> None:
    """Figure, verdict per model, then the tables, Grad-CAM examples and report.md in expanders."""
    report, problem = read_json(bias_dir / "report.json") if (bias_dir / "report.json").is_file() else (None, None)
    if problem:
        st.warning(problem)
    heads = bs.headline_figures(bias_dir, report)
    chart = bs.accuracy_chart(report)
    if heads:
        for png in heads:
            st.image(str(png))  # its own size, never wider than the page
    elif chart:
        st.caption("Accuracy per background variant (%)")
        st.bar_chart(pd.DataFrame(chart), stack=False, sort=False, y_label="accuracy (%)")
    verdicts = bs.model_verdicts(report)
    for v in verdicts:
        getattr(st, v.tone)(f"**{v.model}** {v.sentence}")
    if verdicts:
        st.caption(bs.THRESHOLDS_NOTE)
    elif report is not None or (bias_dir / "report.md").is_file():
        st.info("This report has no per-model results the page can read (an older `evbattery bias`?); "
                "the full report is below. Run `evbattery bias` again for the verdicts.")
    if verdicts:
        with st.expander("Accuracy per variant, every model (%)"):
            st.dataframe(bs.variant_table(report), width="stretch", hide_index=True)
        groups = bs.group_table(report)
        home = bs.home_other_table(report)
        if groups or home:
            with st.expander("Accuracy per group: class × background family (%)"):
                if groups:
                    st.dataframe(groups, width="stretch", hide_index=True)
                if home:
                    st.caption("Mean group accuracy on the classes' home backgrounds and on the rest; *by chance*: "
                               "the central 95 % of the gaps under every other choice of home families.")
                    st.dataframe(home, width="stretch", hide_index=True)
    others = bs.other_figures(bias_dir, report)
    if others:
        with st.expander("Grad-CAM examples"):
            st.caption("Per example photo: its variants, then each model's Grad-CAM on them "
                       "(red = where the model looked).")
            show_pngs(others)
    if (bias_dir / "report.md").is_file():
        with st.expander("Full report (report.md)", expanded=not verdicts):
            st.markdown(_MD_IMAGE.sub("", (bias_dir / "report.md").read_text()))
    if report is not None:
        with st.expander("report.json"):
            st.json(report, expanded=False)


def show_evaluations(evals: list[Path]) -> None:
    """Metrics of every eval_*.json and accuracy by cell size, folded away."""
    rows, by_size = [], []
    for path in evals:
        data, problem = read_json(path)
        if not isinstance(data, dict):
            st.warning(problem or f"{path.name}: not a JSON object")
            continue
        rows.append({"file": path.name, **flat_metrics(data)})
        by_size += [{"file": path.name, "cell area": f"{b['area_from']:.0%}–{b['area_to']:.0%}", "n": b["n"],
                     "accuracy": b["accuracy"], "95 % CI": f"{b['ci'][0]:.3f}–{b['ci'][1]:.3f}"}
                    for b in data.get("by_cell_size") or []]
    with st.expander("Evaluation on the test split (`evbattery evaluate`)"):
        if rows:
            st.dataframe(rows, width="stretch")
        if by_size:
            st.caption("Accuracy by cell size: share of the frame the cell's mask covers; a full-frame model "
                       "fails first on small cells.")
            st.dataframe(by_size, width="stretch")


def show_sweep(sweep_dir: Path) -> None:
    """The bias sweep's figures and report, folded away."""
    with st.expander("Bias sweep: accuracy vs training bias ρ"):
        show_pngs(sorted(sweep_dir.glob("*.png")))
        if (sweep_dir / "report.md").is_file():
            st.markdown(_MD_IMAGE.sub("", (sweep_dir / "report.md").read_text()))


reports = Path(get_settings().reports_dir)
st.title("Background-bias report")
st.caption("Does a model look at the cell or at what lies behind it? Each test photo is scored as is and with its "
           "background removed, swapped or shown alone (Xiao et al. 2020's variants).  \n"
           "BG-Gap = accuracy with the class's own kind of background behind the cell − with a random one; worst "
           "group over class × background family (Sagawa et al. 2020); Grad-CAM share inside the cell's mask.")

bias_dir = reports / "bias"
has_bias = (bias_dir / "report.json").is_file() or (bias_dir / "report.md").is_file()
evals = sorted(reports.glob("eval_*.json"))
sweep_dir = reports / "sweep"
has_sweep = sweep_dir.is_dir() and any(sweep_dir.glob("*.png"))

if has_bias:
    show_bias(bias_dir)
else:
    st.info(f"No bias report under `{bias_dir}` yet. Run `evbattery bias` (or `make run`, which trains the "
            f"models and writes every report), then reload this page.")
if evals:
    show_evaluations(evals)
if has_sweep:
    show_sweep(sweep_dir)

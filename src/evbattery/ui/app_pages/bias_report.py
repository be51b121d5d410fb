"""Bias report page: the files `evbattery evaluate`, `evbattery bias` and the bias sweep wrote under reports/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import streamlit as st

from evbattery.config import get_settings

# Markdown image links point at files next to report.md; the PNGs are shown below with st.image instead.
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


def show_pngs(folder: Path) -> None:
    """Every PNG of a folder, two per row, captioned by file name."""
    pngs = sorted(folder.glob("*.png"))
    for i in range(0, len(pngs), 2):
        for col, png in zip(st.columns(2), pngs[i:i + 2], strict=False):
            col.image(str(png), caption=png.stem.replace("_", " "), width="stretch")


reports = Path(get_settings().reports_dir)
st.title("Background-bias report")
st.caption(f"From `{reports}`. Variants follow Xiao et al. 2020 (Original, Only-FG, No-FG, Only-BG-T, "
           f"Mixed-Same/Rand/Next; BG-Gap = Mixed-Same − Mixed-Rand) and Sagawa et al. 2020 (worst group).")

bias_dir = reports / "bias"
shown = False
if (bias_dir / "report.md").is_file():
    shown = True
    st.markdown(_MD_IMAGE.sub("", (bias_dir / "report.md").read_text()))
    show_pngs(bias_dir)
    if (bias_dir / "report.json").is_file():
        with st.expander("report.json"):
            st.json(json.loads((bias_dir / "report.json").read_text()), expanded=False)

evals = sorted(reports.glob("eval_*.json"))
if evals:
    shown = True
    st.header("Evaluation")
    rows, by_size = [], []
    for path in evals:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            st.warning(f"{path.name}: unreadable ({e})")
            continue
        rows.append({"file": path.name, **flat_metrics(data)})
        by_size += [{"file": path.name, "cell area": f"{b['area_from']:.0%}–{b['area_to']:.0%}", "n": b["n"],
                     "accuracy": b["accuracy"], "95 % CI": f"{b['ci'][0]:.3f}–{b['ci'][1]:.3f}"}
                    for b in data.get("by_cell_size") or []]
    if rows:
        st.dataframe(rows, width="stretch")
    if by_size:
        st.subheader("Accuracy by cell size")
        st.caption("Share of the frame the cell's mask covers; a full-frame model fails first on small cells.")
        st.dataframe(by_size, width="stretch")

sweep_dir = reports / "sweep"
if sweep_dir.is_dir() and any(sweep_dir.glob("*.png")):
    shown = True
    st.header("Bias sweep (accuracy vs training bias ρ)")
    show_pngs(sweep_dir)
    if (sweep_dir / "report.md").is_file():
        st.markdown(_MD_IMAGE.sub("", (sweep_dir / "report.md").read_text()))

if not shown:
    st.info(f"No reports under `{reports}` yet. Run `evbattery evaluate` and `evbattery bias` "
            f"(or `evbattery demo`, which does both), then reload this page.")

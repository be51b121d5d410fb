"""What the bias report says, per model, in one line: pure functions over report.json (no streamlit, no torch).

`evbattery bias` writes reports/bias/report.json (shape: evaluation/bias.py `run_bias_suite`), report.md
and the figures. The UI may not import evaluation (the import contract in pyproject.toml), so the
figure names and variant titles are repeated here.

Verdict on BG-Gap = acc(Mixed-Same) - acc(Mixed-Rand) in percentage points (Xiao et al. 2020, "Noise or
Signal: The Role of Image Backgrounds in Object Recognition"): how much a model gains when the
background behind the cell is its class's own kind rather than a random one. For scale, on ImageNet-9
an ImageNet-trained ResNet-50 has BG-Gap 7.3 (Mixed-Same 86.2 %, Mixed-Rand 78.9 %), a ResNet-50
trained on IN-9L 14.2, and one trained on Mixed-Rand (backgrounds decorrelated from the class) 0.2
(the Backgrounds Challenge table, github.com/MadryLab/backgrounds_challenge).

  |BG-Gap| >= 7.3   "relies on the background": at least the gap of a standard ImageNet ResNet-50,
                    the paper's example of a model that uses backgrounds
  3 <= |BG-Gap| < 7.3   "some background reliance"
  |BG-Gap| < 3      "little background reliance": the project's own debiasing target (issue 8,
                    BG-Gap <= 3; docs/bias-study.md), near the Mixed-Rand-trained model's 0.2

The report holds no interval for BG-Gap, so one is computed from the two accuracies and the number of
photos: the Agresti-Caffo 95 % interval for a difference of two proportions (Agresti & Caffo 2000; one
success and one failure added to each). It treats Mixed-Same and Mixed-Rand as independent samples;
they are the same cells on different backgrounds, so the interval is, if anything, too wide. A gap
whose interval holds 0 is moved down one level and the sentence says it is within sampling noise.
A negative gap (the model does worse on its class's own kind of background) counts by its size too:
the background still changes the answer, the sentence says in which direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELIES = "relies on the background"
SOME = "some background reliance"
LITTLE = "little background reliance"
NO_VERDICT = "no verdict"
LEVELS = (RELIES, SOME, LITTLE)

REFERENCE_BG_GAP = 7.3  # points: ImageNet-trained ResNet-50 on ImageNet-9 (Xiao et al. 2020)
RELIES_AT = REFERENCE_BG_GAP  # |BG-Gap| from here on: "relies on the background"
SOME_AT = 3.0  # |BG-Gap| from here on: "some"; below: "little" (the project's issue-8 target, BG-Gap <= 3)
Z95 = 1.959963984540054

TONES = {RELIES: "error", SOME: "warning", LITTLE: "success", NO_VERDICT: "info"}
THRESHOLDS_NOTE = (f"Verdict on BG-Gap (Mixed-Same − Mixed-Rand, points): {RELIES_AT:g} or more “{RELIES}” "
                   f"(an ImageNet-trained ResNet-50 has {REFERENCE_BG_GAP:g} on ImageNet-9, Xiao et al. 2020), "
                   f"under {SOME_AT:g} “{LITTLE}” (the project's debiasing target), “{SOME}” between; a gap whose "
                   "95 % interval holds 0 is moved down one level.")

VARIANT_TITLES = {"original": "Original", "only_fg": "Only-FG", "no_fg": "No-FG", "only_bg_t": "Only-BG-T",
                  "mixed_same": "Mixed-Same", "mixed_rand": "Mixed-Rand", "mixed_next": "Mixed-Next"}
ACCURACY_FIGURE = "accuracy_by_variant.png"  # evaluation/bias_report.py FIGURES[0]
EXAMPLES_FIGURE = "examples_gradcam.png"  # FIGURES[1]


@dataclass(frozen=True)
class Verdict:
    """One model's verdict: `level` is one of LEVELS or NO_VERDICT; `sentence` starts with the level."""

    model: str
    level: str
    sentence: str
    bg_gap: float | None = None  # percentage points
    interval: tuple[float, float] | None = None  # 95 % interval of BG-Gap, points
    within_noise: bool = False  # the interval holds 0 (the level was moved down one step)

    @property
    def tone(self) -> str:
        """Streamlit's call for it: error (relies), warning (some), success (little), info (no verdict)."""
        return TONES.get(self.level, "info")


def _num(v: Any) -> float | None:
    """A finite number, or None (report.json writes NaN as null; older files may hold anything)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _count(v: Any) -> int | None:
    """A positive count of photos, or None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}"


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def evaluations(report: Any) -> dict[str, dict]:
    """The report's per-model entries ({label: entry}); {} for anything else (older or foreign files)."""
    evals = _dict(report).get("evaluations")
    return {str(k): v for k, v in evals.items() if isinstance(v, dict)} if isinstance(evals, dict) else {}


def gap_interval(same: float, rand: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Agresti-Caffo interval of acc(same) - acc(rand), both shares of n photos, in percentage points."""
    def adjusted(share: float) -> float:
        return (min(max(round(share * n), 0), n) + 1) / (n + 2)

    ps, pr = adjusted(same), adjusted(rand)
    half = z * math.sqrt(ps * (1 - ps) / (n + 2) + pr * (1 - pr) / (n + 2))
    return 100 * (ps - pr - half), 100 * (ps - pr + half)


def level_of(gap: float, interval: tuple[float, float] | None = None) -> tuple[str, bool]:
    """(level, within_noise) for a BG-Gap in points; one level lower when the interval holds 0."""
    size = abs(gap)
    i = 0 if size >= RELIES_AT else 1 if size >= SOME_AT else 2
    noisy = interval is not None and interval[0] <= 0 <= interval[1]
    if noisy and i < 2:
        i += 1
    return LEVELS[i], noisy


def _same_phrase(report: dict) -> str:
    rule = str(report.get("mixed_partner_rule") or "")
    if rule.startswith("home families"):
        return "with its class's home background behind the cell"
    return "on backgrounds from photos of its own class"


def _worst_group_clause(e: dict) -> str | None:
    """'worst group pouch/wood 55.0 %, 29.9 points under the mean (sampling alone: up to 20.9)'."""
    wg = _dict(e.get("worst_group"))
    acc = _num(wg.get("accuracy"))
    if not wg.get("group") or acc is None:
        return None
    clause = f"worst group {wg['group']} {_pct(acc)} %"
    noise = _dict(e.get("worst_group_noise"))
    deficit = _num(noise.get("observed_deficit"))
    if deficit is None and _num(e.get("mean_group_accuracy")) is not None:
        deficit = _num(e["mean_group_accuracy"]) - acc
    if deficit is not None:
        clause += f", {100 * deficit:.1f} points under the mean"
        p95 = next((_num(v) for k, v in noise.items() if k.startswith("null_deficit_p")), None)
        if p95 is not None:
            clause += f" (sampling alone: up to {100 * p95:.1f})"
    return clause


def _cam_clause(e: dict) -> str | None:
    share = _num(_dict(e.get("gradcam_inside")).get("mean"))
    return None if share is None else f"Grad-CAM puts {_pct(share)} % of its weight inside the cell"


def verdict(label: str, e: dict, report: dict | None = None) -> Verdict:
    """The verdict for one entry of report['evaluations'] (never raises on missing or odd keys)."""
    report = _dict(report)
    acc = _dict(e.get("accuracy"))
    same, rand = _num(acc.get("mixed_same")), _num(acc.get("mixed_rand"))
    gap = 100 * (same - rand) if same is not None and rand is not None else None
    if gap is None and _num(e.get("bg_gap")) is not None:
        gap = 100 * _num(e["bg_gap"])
    extras = [c for c in (_worst_group_clause(e), _cam_clause(e)) if c]
    if gap is None:
        sentence = (f"{NO_VERDICT}: the report has no Mixed-Same / Mixed-Rand accuracy for this model "
                    "(an older or partial report?); run `evbattery bias` again")
        return Verdict(label, NO_VERDICT, "; ".join([sentence, *extras]) + ".")
    n = _count(e.get("n")) or _count(report.get("n_images"))
    interval = gap_interval(same, rand, n) if same is not None and rand is not None and n else None
    level, noisy = level_of(gap, interval)
    if same is not None and rand is not None:
        head = (f"{level}: {_pct(same)} % {_same_phrase(report)}, {_pct(rand)} % on random ones "
                f"(BG-Gap {gap:+.1f} points")
    else:
        head = f"{level}: BG-Gap {gap:+.1f} points (no Mixed-Same / Mixed-Rand accuracy in the report"
    head += f", 95 % interval {interval[0]:+.1f} … {interval[1]:+.1f})" if interval else ")"
    if noisy and abs(gap) >= SOME_AT:
        head += f", within sampling noise at n = {n}"
    elif gap <= -SOME_AT:
        head += ", worse on its class's own kind of background than on random ones"
    return Verdict(label, level, "; ".join([head, *extras]) + ".", round(gap, 6), interval, noisy)


def model_verdicts(report: Any) -> list[Verdict]:
    """One Verdict per evaluated model, in the report's order ([] when the report has no evaluations)."""
    return [verdict(label, e, _dict(report)) for label, e in evaluations(report).items()]


def variants_of(report: Any) -> list[str]:
    """The report's variant names in order (every accuracy key seen when it lists none)."""
    listed = _dict(report).get("variants")
    if isinstance(listed, list) and listed:
        return [str(v) for v in listed]
    seen: list[str] = []
    for e in evaluations(report).values():
        seen += [v for v in _dict(e.get("accuracy")) if v not in seen]
    return seen


def variant_table(report: Any) -> list[dict[str, object]]:
    """One row per model: accuracy per variant, BG-Gap and its interval, worst group, Grad-CAM (all in %)."""
    rows = []
    variants = variants_of(report)
    for v in model_verdicts(report):
        e = evaluations(report)[v.model]
        acc = _dict(e.get("accuracy"))
        wg = _dict(e.get("worst_group"))
        cam = _num(_dict(e.get("gradcam_inside")).get("mean"))
        row: dict[str, object] = {"model": v.model, "verdict": v.level}
        row.update({VARIANT_TITLES.get(k, k): _round(_num(acc.get(k)), 100) for k in variants})
        row["BG-Gap"] = _round(v.bg_gap, 1)
        row["BG-Gap 95 %"] = f"{v.interval[0]:+.1f} … {v.interval[1]:+.1f}" if v.interval else "–"
        wacc = _num(wg.get("accuracy"))
        row["worst group"] = f"{_pct(wacc)} ({wg['group']})" if wg.get("group") and wacc is not None else "–"
        row["Grad-CAM in mask"] = _round(cam, 100)
        rows.append(row)
    return rows


def _round(v: float | None, scale: float) -> float | None:
    return None if v is None else round(scale * v, 1)


def group_table(report: Any) -> list[dict[str, object]]:
    """Accuracy (%) per (class × background family) group on Original: one row per group, a column per model."""
    evals = evaluations(report)
    groups: dict[str, int | None] = {}
    for e in evals.values():
        for g, d in _dict(e.get("groups")).items():
            groups.setdefault(g, _dict(d).get("n"))
    rows = []
    for g, n in groups.items():
        row: dict[str, object] = {"group": g, "n": n}
        row.update({label: _round(_num(_dict(_dict(e.get("groups")).get(g)).get("accuracy")), 100)
                    for label, e in evals.items()})
        rows.append(row)
    return rows


def home_other_table(report: Any) -> list[dict[str, object]]:
    """Mean group accuracy (%) on home vs other backgrounds, with the permutation test's p when recorded."""
    rows = []
    for label, e in evaluations(report).items():
        splits = [("Original", _dict(e.get("home_vs_other")), _dict(_dict(e.get("home_vs_other")).get("null")))]
        for by in ("donor", "cell"):
            m = _dict(e.get(f"mixed_rand_by_{by}"))
            splits.append((f"Mixed-Rand by {by}", _dict(m.get("home_vs_other")), _dict(m.get("null"))))
        for by, h, null in splits:
            if _num(h.get("gap")) is None:
                continue
            lo, hi = _num(null.get("null_low")), _num(null.get("null_high"))
            rows.append({"model": label, "groups by": by, "home": _round(_num(h.get("home")), 100),
                         "other": _round(_num(h.get("other")), 100), "gap": _round(_num(h.get("gap")), 100),
                         "by chance": f"{_pct(lo)} … {_pct(hi)}" if lo is not None and hi is not None else "–",
                         "p bias": _num(null.get("p_bias")), "p anti": _num(null.get("p_anti"))})
    return rows


def accuracy_chart(report: Any) -> dict[str, dict[str, float | None]]:
    """{model: {variant title: accuracy %}} in the report's variant order (for a bar chart without the PNG)."""
    variants = variants_of(report)
    return {label: {VARIANT_TITLES.get(v, v): _round(_num(_dict(e.get("accuracy")).get(v)), 100) for v in variants}
            for label, e in evaluations(report).items()}


def _figure_names(report: Any, default: str) -> list[str]:
    listed = _dict(report).get("figures")
    names = [str(f) for f in listed] if isinstance(listed, list) else []
    return names or [default]


def headline_figures(bias_dir: Path, report: Any = None) -> list[Path]:
    """The accuracy-per-variant figure(s) of the report that exist on disk (the page's lead picture)."""
    names = [f for f in _figure_names(report, ACCURACY_FIGURE) if f == ACCURACY_FIGURE] or [ACCURACY_FIGURE]
    return [Path(bias_dir) / f for f in names if (Path(bias_dir) / f).is_file()]


def other_figures(bias_dir: Path, report: Any = None) -> list[Path]:
    """Every other PNG of the report folder, the Grad-CAM examples first."""
    head = set(headline_figures(bias_dir, report))
    pngs = [p for p in sorted(Path(bias_dir).glob("*.png")) if p not in head]
    return sorted(pngs, key=lambda p: p.name != EXAMPLES_FIGURE)

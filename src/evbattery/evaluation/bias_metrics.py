"""Pure arithmetic of the background-bias analysis, on plain arrays of labels and predictions.

BG-Gap (Xiao et al. 2020): acc(Mixed-Same) - acc(Mixed-Rand), how much a model gains when the
background agrees with the cell's class. Worst-group accuracy (Sagawa et al. 2020): the lowest
accuracy over (class x background family) groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import stats


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Share of predictions equal to the labels (NaN for no samples)."""
    y, p = np.asarray(labels), np.asarray(preds)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in length")
    return float((y == p).mean()) if len(y) else float("nan")


def bg_gap(acc_by_variant: dict[str, float]) -> float:
    """BG-Gap = acc(mixed_same) - acc(mixed_rand), in the units of the accuracies given."""
    return float(acc_by_variant["mixed_same"] - acc_by_variant["mixed_rand"])


def group_accuracy(labels: Sequence[int], preds: Sequence[int], groups: Sequence[str]) -> dict[str, dict]:
    """{group: {"accuracy", "n"}} for every group present (sorted by name)."""
    y, p, g = np.asarray(labels), np.asarray(preds), np.asarray(groups)
    if not (len(y) == len(p) == len(g)):
        raise ValueError(f"labels ({len(y)}), predictions ({len(p)}) and groups ({len(g)}) differ in length")
    out = {}
    for name in sorted(set(g.tolist())):
        sel = g == name
        out[str(name)] = {"accuracy": float((y[sel] == p[sel]).mean()), "n": int(sel.sum())}
    return out


def worst_group(per_group: dict[str, dict], min_n: int = 1) -> dict | None:
    """The group with the lowest accuracy among groups with >= min_n samples: {"group", "accuracy", "n"}.

    Ties go to the group whose name sorts first, so the answer is deterministic.
    """
    cands = [(v["accuracy"], k, v["n"]) for k, v in per_group.items() if v["n"] >= min_n]
    if not cands:
        return None
    acc, name, n = min(cands)
    return {"group": name, "accuracy": float(acc), "n": int(n)}


def worst_group_noise(per_group: dict[str, dict], level: float = 0.95) -> dict | None:
    """How far below the pooled accuracy the worst group would fall by sampling alone.

    Groups named '<class>/<family>' are compared within their class: the null hypothesis is that every
    group has its class's pooled accuracy p_c (a class that is harder for the model is not a background
    effect); groups without a '/' share one pool. Each group's score is then Binomial(n_i, p_i) / n_i, and
    the law of their minimum is exact: P(min >= t) = prod_i P(X_i >= ceil(t n_i)). Returned (shares):
      pooled            overall accuracy (correct / total)
      observed_deficit  pooled - worst group's accuracy
      expected_deficit  E[pooled - min] under the null; null_deficit_p{95}: its `level` quantile
      excess_deficit    observed - that quantile (> 0: the worst group is worse than sampling explains)
      worst_ci          Wilson `level` interval of the worst group's accuracy
      homogeneity_p     chi-square test that the groups of each class share one accuracy (statistics and
                        degrees of freedom summed over classes; 1.0 when no class has errors to compare)
    None for fewer than two groups.
    """
    groups = [(k, round(v["accuracy"] * v["n"]), int(v["n"])) for k, v in per_group.items() if v["n"] > 0]
    if len(groups) < 2:
        return None
    ks = np.array([g[1] for g in groups])
    ns = np.array([g[2] for g in groups])
    pool = np.array([g[0].partition("/")[0] if "/" in g[0] else "" for g in groups])
    p = float(ks.sum() / ns.sum())
    p_i = np.array([ks[pool == c].sum() / ns[pool == c].sum() for c in pool])
    support = np.unique(np.concatenate([np.arange(n + 1) / n for n in np.unique(ns)]))
    # survival of the minimum at each support point t: prod_i P(X_i >= ceil(t * n_i))
    need = np.ceil(support[:, None] * ns[None, :] - 1e-9)
    surv = np.prod(stats.binom.sf(need - 1, ns[None, :], p_i[None, :]), axis=1)
    pmf = surv - np.append(surv[1:], 0.0)
    cdf = np.cumsum(pmf)
    q = float(support[min(int(np.searchsorted(cdf, 1 - level)), len(support) - 1)])
    worst = min(groups, key=lambda g: (g[1] / g[2], g[0]))
    ci = stats.binomtest(worst[1], worst[2]).proportion_ci(confidence_level=level, method="wilson")
    chi, dof = 0.0, 0
    for c in np.unique(pool):
        table = np.stack([ks[pool == c], (ns - ks)[pool == c]], axis=1)
        if len(table) > 1 and (table.sum(axis=0) > 0).all():
            res = stats.chi2_contingency(table, correction=False)
            chi, dof = chi + float(res.statistic), dof + int(res.dof)
    observed = p - worst[1] / worst[2]
    return {"pooled": p, "observed_deficit": float(observed), "expected_deficit": float(p - (pmf * support).sum()),
            f"null_deficit_p{round(level * 100)}": p - q, "excess_deficit": float(observed - (p - q)),
            "worst_group": worst[0], "worst_ci": [float(ci.low), float(ci.high)], "level": level,
            "homogeneity_p": float(stats.chi2.sf(chi, dof)) if dof else 1.0, "n_groups": len(groups),
            "min_n": int(ns.min())}


def home_vs_other(per_group: dict[str, dict], home_families: dict[str, list[str]]) -> dict | None:
    """Mean group accuracy over (class x family) groups whose family is / is not a home family of the class.

    On a balanced test split of class-biased data this reads a background shortcut directly: a model that
    uses the cell scores alike on both; one that uses the background scores high at home and low elsewhere.
    Groups are named '<class>/<family>'. None when either kind of group is absent.
    """
    home, other = [], []
    for name, g in per_group.items():
        cls, _, fam = name.partition("/")
        (home if fam in home_families.get(cls, ()) else other).append(g["accuracy"])
    if not home or not other:
        return None
    h, o = float(np.mean(home)), float(np.mean(other))
    return {"home": h, "other": o, "gap": h - o, "n_home_groups": len(home), "n_other_groups": len(other)}


def _disjoint_assignments(families: list[str], sizes: list[int]):
    """Every way to give class i a set of sizes[i] families, the sets disjoint (in a fixed order)."""
    if not sizes:
        yield ()
        return
    for first in combinations(families, sizes[0]):
        rest = [f for f in families if f not in first]
        for tail in _disjoint_assignments(rest, sizes[1:]):
            yield (first, *tail)


def home_gap_null(per_group: dict[str, dict], home_families: dict[str, list[str]], level: float = 0.95,
                  max_exact: int = 100_000, draws: int = 20_000, seed: int = 0) -> dict | None:
    """Is a home-vs-other gap a background effect, or the luck of which groups are 'home'?

    Group accuracies over (class x family) vary for reasons that have nothing to do with bias: a cell can
    be harder to see on one texture than another (camouflage), and each group is a finite sample. The home
    families are one fixed assignment of families to classes, so a gap read off them carries that
    variation too. Null hypothesis: the model's group accuracies do not depend on which families are home;
    then the card's assignment is exchangeable with every other assignment of the same sizes, and the gap
    under the card's assignment is one draw from the gaps under all of them (a permutation test, exact
    when the assignments are few enough to enumerate; 9 families in 3 x 3 give 1,680). Returned (shares):
      observed       the gap (home - other) under the card's assignment, as `home_vs_other` computes it
      null_mean, null_sd, null_low/null_high   the gaps' mean, sd and central `level` interval
      p_value        two-sided: share of assignments with |gap| >= |observed|
      p_bias         one-sided: share with gap >= observed (small: the model favours home backgrounds)
      p_anti         one-sided: share with gap <= observed (small: it disfavours them)
    None when the card names no home family present in the groups, or two classes share a home family.
    """
    acc: dict[tuple[str, str], float] = {}
    for name, g in per_group.items():
        cls, sep, fam = name.partition("/")
        if sep and g.get("n", 1) > 0:
            acc[(cls, fam)] = float(g["accuracy"])
    classes = sorted({c for c, _ in acc} & set(home_families))
    families = sorted({f for _, f in acc})
    homes = {c: [f for f in home_families[c] if f in families] for c in classes}
    sizes = [len(homes[c]) for c in classes]
    if not any(sizes) or len({f for c in classes for f in homes[c]}) < sum(sizes):
        return None  # nothing is home, or classes share a home family (not one of the disjoint assignments)
    all_classes = sorted({c for c, _ in acc})
    m = np.array([[acc.get((c, f), np.nan) for f in families] for c in all_classes])
    rows = {c: i for i, c in enumerate(all_classes)}
    col = {f: j for j, f in enumerate(families)}
    present = ~np.isnan(m)

    def gap(assign: tuple[tuple[str, ...], ...]) -> float:
        home = np.zeros_like(present)
        for c, fams in zip(classes, assign, strict=True):
            for f in fams:
                home[rows[c], col[f]] = True
        h, o = m[home & present], m[~home & present]
        return float(h.mean() - o.mean()) if len(h) and len(o) else float("nan")

    n_total = _n_assignments(len(families), sizes)
    if n_total <= max_exact:
        gaps = np.array([gap(a) for a in _disjoint_assignments(families, sizes)])
    else:
        rng = np.random.default_rng(seed)
        gaps = []
        for _ in range(draws):
            order = list(rng.permutation(families))
            assign, k = [], 0
            for size in sizes:
                assign.append(tuple(order[k:k + size]))
                k += size
            gaps.append(gap(tuple(assign)))
        gaps = np.array(gaps)
    gaps = gaps[~np.isnan(gaps)]
    observed = gap(tuple(tuple(homes[c]) for c in classes))
    if not len(gaps) or np.isnan(observed):
        return None
    tol, exact = 1e-12, n_total <= max_exact
    lo, hi = np.quantile(gaps, [(1 - level) / 2, 1 - (1 - level) / 2])

    def share(hits: np.ndarray) -> float:  # a sampled null counts the observed assignment once more
        return float(hits.mean()) if exact else float((hits.sum() + 1) / (len(hits) + 1))

    return {"observed": observed, "null_mean": float(gaps.mean()), "null_sd": float(gaps.std()),
            "null_low": float(lo), "null_high": float(hi), "level": level,
            "p_value": share(np.abs(gaps) >= abs(observed) - tol),
            "p_bias": share(gaps >= observed - tol), "p_anti": share(gaps <= observed + tol),
            "n_assignments": len(gaps), "exact": exact}


def _n_assignments(n_families: int, sizes: list[int]) -> int:
    """Number of disjoint assignments: C(n, s1) * C(n - s1, s2) * ..."""
    return math.prod(math.comb(n_families - sum(sizes[:i]), s) for i, s in enumerate(sizes))


def share_histogram(values: Sequence[float], bins: int = 10) -> dict[str, list]:
    """Histogram of shares in [0, 1] (NaNs dropped): {"edges", "counts"}."""
    v = np.asarray(values, dtype=float)
    counts, edges = np.histogram(v[~np.isnan(v)], bins=bins, range=(0.0, 1.0))
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def pairwise_agreement(labels: Sequence[int], preds: dict[str, Sequence[int]]) -> list[dict]:
    """For every pair of models: agreement rate and, among disagreements, who was wrong.

    a_wrong = a wrong while b right; b_wrong = the reverse; both_wrong = both wrong (and different).
    Shares are of the disagreements (NaN when the two never disagree).
    """
    y = np.asarray(labels)
    out = []
    for a, b in combinations(preds, 2):
        pa, pb = np.asarray(preds[a]), np.asarray(preds[b])
        dis = pa != pb
        n_dis = int(dis.sum())
        a_wrong = int((dis & (pa != y) & (pb == y)).sum())
        b_wrong = int((dis & (pb != y) & (pa == y)).sum())
        both = n_dis - a_wrong - b_wrong
        share = (lambda k, d=n_dis: k / d if d else float("nan"))
        out.append({"a": a, "b": b, "n": len(y), "agreement": float((~dis).mean()) if len(y) else float("nan"),
                    "disagreements": n_dis, "a_wrong": a_wrong, "b_wrong": b_wrong, "both_wrong": both,
                    "a_wrong_share": share(a_wrong), "b_wrong_share": share(b_wrong),
                    "both_wrong_share": share(both)})
    return out

"""The generalization-measures experiment's ranking, sentences, tables and figures, all
computed from its result rows (``runs``: one per model, with its outcome, ``gap`` and
every indicator of ``indicators.INDICATORS``; ``dinh``: the audited models)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import numpy as np

from .indicators import INDICATORS, SIGNS
from .outcomes import FINE
from .plotting import COLORS, new_figure, no_data
from .ranking import bootstrap_interval, granulated_tau, kendall_tau
from .stats import finite

AXES = ("width", "depth", "dropout", "batch_size", "lr", "weight_decay", "label_noise")


def _ok(v) -> bool:
    """A finite number (NaN is None once results went through JSON)."""
    return v is not None and math.isfinite(v)


def mean_of(rows: Sequence[dict], key: str) -> float:
    v = finite(r[key] for r in rows)
    return float(v.mean()) if v.size else math.nan


def ranking(rows: Sequence[dict], resamples: int, seed: int) -> dict:
    """``{"ranking": one record per indicator, highest oriented tau first}``: tau and Psi
    multiplied by the indicator's sign (positive = ranks the gap as expected), the
    bootstrap interval, n, and the granulated tau per axis that varies."""
    fine = [r for r in rows if r["outcome"] == FINE]
    axes = [a for a in AXES if len({r[a] for r in fine}) > 1]
    gap = [r["gap"] for r in fine]
    out = []
    for name, label in INDICATORS.items():
        values, s = [r[name] for r in fine], partial(_oriented, SIGNS[name])
        lo, hi = bootstrap_interval(values, gap, resamples, seed)
        per_axis, psi = granulated_tau(fine, name, "gap", axes)
        out.append({
            "indicator": name, "label": label, "sign": SIGNS[name],
            "n": int(finite(values).size),  # fine models have a finite gap
            "tau": s(kendall_tau(values, gap)),
            "lo": min(s(lo), s(hi)), "hi": max(s(lo), s(hi)), "psi": s(psi),
            "axes": {a: s(v["tau"]) for a, v in per_axis.items()},
        })  # fmt: skip
    out.sort(key=lambda r: -r["tau"] if _ok(r["tau"]) else math.inf)
    return {"ranking": out, "resamples": resamples}


def _oriented(sign: int, value: float) -> float:
    """``value`` times the indicator's sign (+ 0.0: a zero is never written "-0.0")."""
    return sign * value + 0.0


def best(results: dict, key: str, among: Sequence[str] | None = None) -> dict | None:
    """The indicator (of those named in ``among``, default all) with the highest finite
    ``key`` ("tau" or "psi"), or None."""
    rs = [
        r for r in results["ranking"] if _ok(r[key]) and (among is None or r["indicator"] in among)
    ]
    return max(rs, key=lambda r: r[key]) if rs else None


def ranking_lines(results: dict) -> list[str]:
    top, top_psi = best(results, "tau"), best(results, "psi")
    if top is None:
        return ["No indicator could be ranked: no two fine models with finite values."]
    excludes = top["lo"] > 0
    above = [r["label"] for r in results["ranking"] if _ok(r["lo"]) and r["lo"] > 0]
    worst = min((r for r in results["ranking"] if _ok(r["tau"])), key=lambda r: r["tau"])
    lines = [
        f"Ranked first by tau: {top['label']}, tau = {top['tau']:.3f} (95% bootstrap interval "
        f"[{top['lo']:.3f}, {top['hi']:.3f}], {results['resamples']} resamples, n={top['n']}); "
        f"the interval {'excludes' if excludes else 'includes'} 0. Last: {worst['label']}, "
        f"tau = {worst['tau']:.3f}.",
        f"{len(above)} of {len(results['ranking'])} indicators have an interval above 0"
        + (f": {', '.join(above)}." if above else "."),
    ]
    if top_psi is not None:
        lines.append(
            f"Ranked first by the granulated tau: {top_psi['label']}, Psi = {top_psi['psi']:.3f} "
            f"(mean over the axes {', '.join(top_psi['axes'])})."
        )
    return lines


def setting_lines(results: dict) -> list[str]:
    """The hyperparameter that alone orders the fine models' gaps best (|tau|), and the
    indicators whose tau is above it: a ranking is only informative beyond the settings."""
    fine = [r for r in results["runs"] if r["outcome"] == FINE]
    gap = [r["gap"] for r in fine]
    taus = {
        a: kendall_tau([r[a] for r in fine], gap) for a in AXES if len({r[a] for r in fine}) > 1
    }
    taus = {a: t for a, t in taus.items() if _ok(t)}
    if not taus:
        return []
    axis = max(taus, key=lambda a: abs(taus[a]))
    values = [r[axis] for r in fine]
    low, high = min(values), max(values)
    split = [r["gap"] for r in fine if r[axis] == low], [r["gap"] for r in fine if r[axis] == high]
    pairs = sum(a < b for a in split[0] for b in split[1])
    n, counts = len(values), np.unique(values, return_counts=True)[1]
    ceiling = (n * n - (counts**2).sum()) / (n * (n - 1))  # ties count 0 in Jiang's tau
    above = [r["label"] for r in results["ranking"] if _ok(r["tau"]) and r["tau"] > abs(taus[axis])]
    return [
        f"Of the settings alone, {axis} orders the gap best: tau = {taus[axis]:.3f}, at most "
        f"{ceiling:.3f} with its ties (the gap of a model at {axis} {high:g} is above that of "
        f"one at {low:g} in {pairs} of {len(split[0]) * len(split[1])} pairs); indicators "
        f"above it: {', '.join(above) or 'none'}."
    ]


def dinh_verdicts(results: dict) -> tuple[list[str], list[str]]:
    """Labels of the indicators whose largest relative change over the audited models is
    above the tolerance, and of those at or below it (indicators without values: neither)."""
    changed, same = [], []
    for name, label in INDICATORS.items():
        v = finite(d["indicators"][name]["relative_change"] for d in results["dinh"])
        if v.size:
            (changed if v.max() > results["tolerance"] else same).append(label)
    return changed, same


def dinh_line(results: dict, changed: list[str], same: list[str]) -> str:
    if not results["dinh"]:
        return "Dinh et al. audit: not measured, no model trained to the target to rescale."
    out = max(d["max_output_change"] for d in results["dinh"])
    return (
        f"Dinh et al. audit ({len(results['dinh'])} fine models, layer 0 x "
        f"{results['dinh_factor']:g}, layer 1 x 1/{results['dinh_factor']:g}): the outputs "
        f"change by at most {out:.1e}; changed by more than {results['tolerance']:g} "
        f"(relative): {', '.join(changed) or 'none'}; unchanged: {', '.join(same) or 'none'}."
    )


def ranking_table(results: dict) -> list[dict]:
    return [
        {
            "indicator": r["label"],
            "n": r["n"],
            "tau": _f(r["tau"]),
            "interval low": _f(r["lo"]),
            "interval high": _f(r["hi"]),
            "Psi": _f(r["psi"]),
            **{f"tau within {a}": _f(v) for a, v in r["axes"].items()},
        }  # fmt: skip
        for r in results["ranking"]
    ]


def dinh_table(results: dict) -> list[dict]:
    rows = []
    for name, label in INDICATORS.items():
        v = finite(d["indicators"][name]["relative_change"] for d in results["dinh"])
        rows.append({"indicator": label, "models": int(v.size),
                     "largest relative change": _f(v.max() if v.size else math.nan)})  # fmt: skip
    return rows


def _f(v) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _n_fine(results: dict) -> int:
    return sum(r["outcome"] == FINE for r in results["runs"])


def ranking_figure(results: dict):
    fig, ax = new_figure(width=7.5, height=5.5)
    rs = [r for r in results["ranking"] if _ok(r["tau"])][::-1]
    ax.set_title(f"Indicators vs generalization gap (n={_n_fine(results)} fine models of "
                 f"{len(results['runs'])})", fontsize=10)  # fmt: skip
    if not rs:
        no_data(ax, "no indicator ranked: fewer than 2 fine models")
        return fig
    y = np.arange(len(rs))
    tau = np.array([r["tau"] for r in rs])
    lo, hi = (np.array([r[k] for r in rs], dtype=float) for k in ("lo", "hi"))  # None -> NaN
    ax.barh(y, tau, color=COLORS[0], alpha=0.7, label="Kendall tau (oriented)")
    ax.errorbar(tau, y, xerr=np.nan_to_num([tau - lo, hi - tau]), fmt="none", color="black", capsize=3,
                label=f"95% bootstrap interval ({results['resamples']} resamples)")  # fmt: skip
    psi = np.array([r["psi"] for r in rs], dtype=float)
    ax.scatter(psi, y, marker="D", color=COLORS[1], zorder=3, label="granulated tau Psi")
    ax.set_yticks(y, [f"{r['label']} (n={r['n']})" for r in rs], fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="tau with the gap, sign-oriented (positive = predicts as expected)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def granulated_figure(results: dict):
    rs = results["ranking"]
    axes = list(rs[0]["axes"]) if rs else []
    fig, ax = new_figure(width=max(5.0, 1.0 * len(axes) + 3.5), height=5.5)
    ax.set_title(f"Granulated tau per axis (n={_n_fine(results)} fine models)", fontsize=10)
    grid = np.array([[r["axes"][a] for a in axes] for r in rs], dtype=float)
    if not axes or not np.isfinite(grid).any():
        no_data(ax, "no axis with groups of >= 2 fine models")
        return fig
    ax.grid(False)
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, "" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(axes)), axes, rotation=30, fontsize=8)
    ax.set_yticks(range(len(rs)), [r["label"] for r in rs], fontsize=8)
    fig.colorbar(im, ax=ax, label="mean tau within groups (oriented)")
    fig.tight_layout()
    return fig


def scatter_figure(results: dict):
    fig, axs = new_figure(ncols=3, width=4.0, height=3.6)
    fine = [r for r in results["runs"] if r["outcome"] == FINE]
    top = sorted((r for r in results["ranking"] if _ok(r["tau"])),
                 key=lambda r: -abs(r["tau"]))[:3]  # fmt: skip
    fig.suptitle(f"The indicators with the largest |tau| vs the gap (n={len(fine)} fine "
                 "models)", fontsize=10)  # fmt: skip
    noises = sorted({r["label_noise"] for r in fine})
    for i, ax in enumerate(axs):
        if i >= len(top):
            no_data(ax, "no indicator to draw")
            continue
        name = top[i]["indicator"]
        for c, p in enumerate(noises):
            pts = [(r[name], r["gap"]) for r in fine
                   if r["label_noise"] == p and _ok(r[name]) and _ok(r["gap"])]  # fmt: skip
            if pts:
                x, gap = np.array(pts).T
                ax.scatter(x, gap, s=14, color=COLORS[c], label=f"noise {p:g} (n={len(pts)})")
        v = finite(r[name] for r in fine)
        if v.size and v.min() > 0 and v.max() > 10 * v.min():
            ax.set_xscale("log")
        ax.set(xlabel=top[i]["label"], ylabel="gap: test error - training error")
        ax.set_title(f"oriented tau = {top[i]['tau']:.2f} (n={top[i]['n']})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def dinh_figure(results: dict):
    fig, ax = new_figure(width=7.0, height=5.0)
    ax.set_title(f"Dinh et al. rescaling (a = {results['dinh_factor']:g}): relative change "
                 f"of each indicator (n={len(results['dinh'])} models)", fontsize=10)  # fmt: skip
    rows = [(r["indicator"], r["largest relative change"]) for r in dinh_table(results)]
    drawn = [(label, float(v)) for label, v in rows if v != "nan"]
    if not drawn:
        no_data(ax, "not measured: no model trained to the target")
        return fig
    tol = results["tolerance"]
    floor = tol * 1e-6  # an unchanged indicator (0) drawn at the floor of the log axis
    y = np.arange(len(drawn))
    vals = [max(v, floor) for _, v in drawn]
    ax.barh(y, vals, color=[COLORS[3] if v > tol else COLORS[2] for _, v in drawn])
    ax.axvline(tol, color="black", ls="--", lw=1, label=f"tolerance {tol:g}")
    ax.set_yticks(y, [label for label, _ in drawn], fontsize=8)
    ax.set(xscale="log", xlabel="largest |rescaled - original| / |original| over the models")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""minimal-ratio: the figures, drawn from the saved results alone."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D

from dlprobe.experiments.common import sci
from dlprobe.experiments.minimal_ratio.protocol import LOW_LOSS, column, loss_groups, ratios_at
from dlprobe.experiments.plotting import COLORS, new_figure

# Relative tolerances of the tolerance-sensitivity figure (0 is drawn separately).
REL_TOLS = tuple(10.0**e for e in range(-14, -1))


def _symlog_ticks(tol: float, low: float, high: float) -> list[float]:
    """0 and every other power of ten from the tolerance out to the data, on both sides."""
    first = math.ceil(math.log10(max(tol, 1e-300)))
    ticks = [0.0]
    for sign, end in ((1, high), (-1, low)):
        if sign * end > tol:
            top = math.ceil(math.log10(sign * end))
            ticks += [sign * 10.0**d for d in range(first, top + 1, 2)]
    return sorted(ticks)


def figures(results: dict) -> dict:
    setup = results["setup"][0]
    n = len(results["runs"])
    loss = column(results, "loss")
    grad_norm = column(results, "grad_norm")
    reached = np.array([r["reached_threshold"] for r in results["runs"]], dtype=bool)
    figs = {}

    fig, axes = new_figure(ncols=2, width=5.6, height=4.6, sharey=True, layout="constrained")
    positive = grad_norm[np.isfinite(grad_norm) & (grad_norm > 0)]
    norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.01))
    panels = [
        ("minimal_ratio", f"eigenvalues: fraction > tol (rel. tol {setup['eig_rel_tol']:g})"),
        (
            "sampled_ratio",
            f"sampling: fraction of {setup['n_samples']} neighbours\n"
            f"at radius {setup['radius']:g} with higher loss",
        ),
    ]
    bound = setup["n_points"] / setup["params"]
    for ax, (key, title) in zip(axes, panels, strict=True):
        ratio = column(results, key)
        sc = ax.scatter(
            loss[reached],
            ratio[reached],
            c=grad_norm[reached],
            norm=norm,
            cmap="viridis",
            s=28,
            edgecolors="black",
            linewidths=0.3,
        )
        ax.scatter(
            loss[~reached], ratio[~reached], c=grad_norm[~reached], norm=norm, cmap="viridis",
            marker="x", s=30, linewidths=1.2,
        )  # fmt: skip
        if key == "minimal_ratio":
            ax.axhline(bound, color="grey", ls=":", lw=1)
        ax.axvline(LOW_LOSS, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set(xlabel="final training loss (MSE)", title=title)
    axes[0].set_ylabel("minimal ratio")
    thr = setup["grad_norm_threshold"]
    handles = [
        Line2D([], [], marker="o", ls="", mfc="0.6", mec="black", mew=0.3,
               label=f"|grad| < {thr:g} reached (n={int(reached.sum())})"),
        Line2D([], [], marker="x", ls="", color="0.4", mew=1.2,
               label=f"not reached (n={int((~reached).sum())})"),
        Line2D([], [], color="grey", ls=":", label=f"points / params = {bound:.2f}"),
        Line2D([], [], color="grey", ls="--", lw=0.8, label=f"loss = {LOW_LOSS:g}"),
    ]  # fmt: skip
    axes[0].legend(handles=handles, fontsize=8, loc="upper left")
    fig.colorbar(sc, ax=list(axes), label="final gradient norm (log)", shrink=0.9)
    fig.suptitle(
        f"Minimal ratio against loss: {n} runs of MLP {'-'.join(map(str, setup['widths']))} "
        f"({setup['activation']}, {setup['params']} params) on {setup['formula']}",
        fontsize=10,
    )
    figs["ratio-vs-loss"] = fig

    fig, ax = new_figure(width=6.5, height=4.4)
    order = np.argsort(np.where(np.isfinite(loss), loss, np.inf))
    finite = order[np.isfinite(loss[order])]
    picks = {"lowest loss": finite[0], "median loss": finite[len(finite) // 2]}
    picks["highest loss"] = finite[-1]
    tols, extremes = [], []
    for i, (label, k) in enumerate(picks.items()):
        r = results["runs"][k]
        lam = np.sort(np.array(results["spectra"][k]["eigenvalues"], dtype=float))
        tols.append(r["eig_tol"])
        extremes += [lam[0], lam[-1]]
        ax.plot(
            np.arange(1, lam.size + 1), lam, marker="o", ms=2.5, lw=0.8, color=COLORS[i],
            label=f"{label}: run {k}, loss {sci(r['loss'])}, ratio {r['minimal_ratio']:.2f}",
        )  # fmt: skip
    tol = max(tols)
    ax.axhspan(-tol, tol, color="grey", alpha=0.25, lw=0, label=f"|λ| <= tol (<= {tol:.1e})")
    ax.set_yscale("symlog", linthresh=max(tol, 1e-300), linscale=1.0)
    ax.set_yticks(_symlog_ticks(tol, min(extremes), max(extremes)))
    ax.minorticks_off()
    ax.set(
        xlabel="eigenvalue index (ascending)",
        ylabel="Hessian eigenvalue (symlog)",
        title=f"Exact Hessian spectra (float64) of 3 of {n} runs",
    )
    ax.legend(fontsize=7.5, loc="upper left")
    figs["spectra"] = fig

    fig, ax = new_figure(width=6.5, height=4.2)
    for i, (label, mask) in enumerate(loss_groups(results).items()):
        if not mask.any():
            continue
        curves = np.array([ratios_at(results, t)[mask] for t in REL_TOLS])  # (T, n_group)
        ax.plot(REL_TOLS, np.median(curves, 1), color=COLORS[i],
                label=f"{label}: median, band min-max (n={int(mask.sum())})")  # fmt: skip
        ax.fill_between(REL_TOLS, curves.min(1), curves.max(1), color=COLORS[i], alpha=0.2, lw=0)
        at_zero = ratios_at(results, 0.0)[mask]
        ax.errorbar(
            [REL_TOLS[0] / 10], [np.median(at_zero)],
            yerr=[[np.median(at_zero) - at_zero.min()], [at_zero.max() - np.median(at_zero)]],
            color=COLORS[i], marker="s", capsize=3,
        )  # fmt: skip
    ax.axvline(setup["eig_rel_tol"], color="black", ls="--", lw=0.8, label="tolerance used")
    ax.set_xscale("log")
    ax.set(
        xlabel="tolerance relative to max|λ| (square at left: tol = 0, sign only)",
        ylabel="minimal ratio (fraction > tol)",
        title=f"Minimal ratio depends on the zero tolerance ({n} runs)",
    )
    ax.legend(fontsize=8)
    figs["ratio-vs-tolerance"] = fig
    return figs

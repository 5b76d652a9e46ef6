"""flatness-interpolation: the figures, drawn from the saved results alone."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.common import group_rows
from dlprobe.experiments.plotting import COLORS, joint_legend, mean_band, new_figure, twin_axis


def _curve(results: dict, pair: str, metric: str) -> tuple[list[float], np.ndarray]:
    """Alphas and an array (n_pairs, n_alphas) of ``metric`` along the line."""
    by_seed = group_rows([r for r in results["curves"] if r["pair"] == pair], "seed")
    alphas = [r["alpha"] for r in next(iter(by_seed.values()))]
    return alphas, np.array([[r[metric] for r in rows] for rows in by_seed.values()], dtype=float)


def figures(results: dict) -> dict:
    figs = {}
    n = len(results["seeds"])
    for p in results["pairs"]:
        fig, ax = new_figure(width=7.0, height=4.8)
        ax2 = twin_axis(ax)
        for i, split in enumerate(("train", "test")):
            alphas, runs = _curve(results, p["pair"], f"{split}_loss")
            mean_band(ax, alphas, runs, f"{split} loss (left)", COLORS[i], log=True)
            alphas, runs = _curve(results, p["pair"], f"{split}_accuracy")
            mean_band(ax2, alphas, runs, f"{split} accuracy (right)", COLORS[i])
        for line in ax2.get_lines():
            line.set_linestyle("--")
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy loss (log scale, solid)")
        ax2.set_ylabel("accuracy (dashed)")
        ax2.set_ylim(0, 1.02)
        for alpha, name in ((0.0, "m1"), (1.0, "m2")):
            ax.axvline(alpha, color="gray", lw=0.8, ls=":")
            ax.annotate(
                name,
                xy=(alpha, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=9,
                color="dimgray",
            )
        ax.set_xlabel("α   (θ(α) = (1 − α)·θ1 + α·θ2, no training in between)")
        ax.set_title(
            f"Interpolation: {p['label']}; n={n} pairs\nm1 (α=0): {p['m1']},  m2 (α=1): {p['m2']}",
            fontsize=10,
            pad=16,
        )
        joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        figs[f"interpolation-{p['pair'].replace(' ', '-')}"] = fig
    return figs

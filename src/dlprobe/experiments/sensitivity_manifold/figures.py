"""sensitivity-manifold: the figures, drawn from the saved results alone."""

from __future__ import annotations

import math

import numpy as np

from dlprobe.experiments.common import group_rows
from dlprobe.experiments.plotting import COLORS, new_figure
from dlprobe.experiments.sensitivity_manifold.protocol import (
    ANCHOR_T,
    CASE_TITLES,
    CASES,
    PHASES,
    per_ellipse,
)


def _angle_axis(ax) -> None:
    ax.set_xlim(0, 2 * math.pi)
    ax.set_xticks([0, 2 * math.pi / 3, 4 * math.pi / 3, 2 * math.pi])
    ax.set_xticklabels(["0", "2π/3", "4π/3", "2π"])
    ax.set_xlabel("angle t along the ellipse (radians)")
    ax.set_yscale("log")


def _mark_inputs(ax, classes: list[int] | None = None) -> None:
    for i, t in enumerate(ANCHOR_T):
        ax.axvline(t, color="black", lw=1.2, ls=":")
        label = f"x{i + 1}" + (f" ({classes[i]})" if classes is not None else "")
        ax.annotate(
            label,
            (t, 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=8,
        )


def _shade_classes(ax, t: np.ndarray, pred: np.ndarray) -> None:
    """Background spans coloured by predicted class, the class written on wide spans."""
    step = t[1] - t[0]
    starts = np.flatnonzero(np.r_[True, pred[1:] != pred[:-1]])
    ends = np.r_[starts[1:], len(pred)]
    for s, e in zip(starts, ends, strict=True):
        lo, hi = t[s] - step / 2 if s else 0.0, min(t[e - 1] + step / 2, 2 * math.pi)
        ax.axvspan(lo, hi, color=COLORS[pred[s] % len(COLORS)], alpha=0.15, lw=0)
        if hi - lo > 0.12:
            ax.annotate(
                str(pred[s]),
                ((lo + hi) / 2, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -11),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="dimgray",
            )


def figures(results: dict) -> dict:
    figs = {}
    curves = group_rows(results["curves"], "case", "phase", "seed", "ellipse")
    ellipses = {(e["case"], e["ellipse"]): e for e in results["ellipses"]}
    seed0 = results["seeds"][0]

    fig, axes = new_figure(nrows=2, width=9.0, height=3.3, squeeze=False)
    for ax, case in zip(axes[:, 0], CASES, strict=True):
        trained = curves[(case, "trained", seed0, 0)]
        initial = curves[(case, "initial", seed0, 0)]
        t = np.array([r["t"] for r in trained])
        _shade_classes(ax, t, np.array([r["predicted"] for r in trained]))
        ax.plot(t, [r["sensitivity"] for r in trained], color=COLORS[0], lw=1.4, label="trained")
        ax.plot(
            t,
            [r["sensitivity"] for r in initial],
            color="gray",
            lw=1.0,
            ls="--",
            label="at initialization",
        )
        classes = ellipses[(case, 0)]["classes"]
        _mark_inputs(ax, classes)
        _angle_axis(ax)
        ax.set_ylabel("‖∂softmax/∂x‖_F")
        ax.set_title(
            f"{CASE_TITLES[case]} (classes {', '.join(map(str, classes))}); one ellipse, "
            f"model seed {seed0}; shading and digits on top: predicted class (trained)",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    figs["ellipse-example"] = fig

    fig, axes = new_figure(ncols=2, width=5.5, height=4.0, squeeze=False, sharey=True)
    for ax, case in zip(axes[0], CASES, strict=True):
        for phase, color in (("trained", COLORS[0]), ("initial", "gray")):
            runs = [v for (c, p, _, _), v in curves.items() if c == case and p == phase]
            t = np.array([r["t"] for r in runs[0]])
            s = np.log(np.array([[r["sensitivity"] for r in rs] for rs in runs]))  # (n, T)
            label = "trained" if phase == "trained" else "at initialization"
            ax.plot(t, np.exp(s.mean(0)), color=color, lw=1.5, label=f"{label} (n={len(runs)})")
            lo, hi = np.exp(np.quantile(s, [0.25, 0.75], axis=0))
            ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)
        _mark_inputs(ax)
        _angle_axis(ax)
        ax.set_title(CASE_TITLES[case], fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    axes[0, 0].set_ylabel("‖∂softmax/∂x‖_F (geometric mean, IQR band)")
    fig.suptitle("Sensitivity along ellipses through three training inputs (n ellipses × models)")
    fig.tight_layout()
    figs["ellipse-mean"] = fig

    fig, ax = new_figure(width=6.5)
    rows = per_ellipse(results)
    groups = [(case, phase) for case in CASES for phase in PHASES]
    rng = np.random.default_rng(0)  # horizontal jitter only
    for i, (case, phase) in enumerate(groups):
        ratios = [r["ratio"] for r in rows if r["case"] == case and r["phase"] == phase]
        color = COLORS[0] if phase == "trained" else "gray"
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(ratios)), ratios, color=color, s=22)
        ax.hlines(np.median(ratios), i - 0.25, i + 0.25, color="black", lw=1.5)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xticks(range(len(groups)))
    n = len(rows) // len(groups)
    ax.set_xticklabels([f"{c} class\n{p}\n(n={n})" for c, p in groups], fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("mean sensitivity between inputs / at inputs")
    ax.set_title(f"Between vs at the data (at: within ±{results['window']:g} rad; bar: median)")
    fig.tight_layout()
    figs["ratio"] = fig
    return figs

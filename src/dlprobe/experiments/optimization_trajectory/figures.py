"""optimization-trajectory: the figures, drawn from the saved results alone."""

from __future__ import annotations

from dlprobe.experiments.common import group_rows
from dlprobe.experiments.optimization_trajectory.protocol import (
    TWIN,
    distance_matrix,
    explained_variance,
    select,
)
from dlprobe.experiments.plotting import COLORS, new_figure


def _labelled_indices(n: int) -> set[int]:
    """Snapshots whose accuracy is written next to them: a third, two thirds, the end."""
    return {n // 3, (2 * n) // 3, n - 1}


def _draw_trajectories(ax, results: dict, view: str, method: str, aligned: bool) -> None:
    rows = select(results["coords"], view=view, method=method, aligned=aligned)
    accuracy = {(r["event"], r["epoch"]): r["train_accuracy"] for r in results["snapshots"]}
    by_event = group_rows(rows, "event")
    for i, name in enumerate(results["events"]):
        pts = by_event[(name,)]
        xs, ys = [r["x"] for r in pts], [r["y"] for r in pts]
        twin = name == TWIN
        color = "black" if twin else COLORS[i % len(COLORS)]
        ax.plot(
            xs,
            ys,
            ls="--" if twin else "-",
            marker=".",
            ms=4,
            lw=1,
            color=color,
            alpha=0.8,
            label=f"{name} (permuted)" if twin else name,
        )
        ax.plot(xs[0], ys[0], "o", color=color, ms=7, mfc="white")
        ax.plot(xs[-1], ys[-1], "*", color=color, ms=13, mec="black" if not twin else "white")
        if method == "pca+tsne":
            continue
        labelled = {len(pts) - 1} if twin else _labelled_indices(len(pts))
        for j in sorted(labelled):
            ax.annotate(
                f"{accuracy[(name, pts[j]['epoch'])]:.2f}",
                (xs[j], ys[j]),
                xytext=(4, 4 if not twin else -10),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
    ax.plot([], [], "o", color="gray", mfc="white", label="start (epoch 0)")
    ax.plot([], [], "*", color="gray", ms=11, label=f"end (epoch {results['snapshot_epochs'][-1]})")
    if method == "pca":
        evr = explained_variance(results, view, method, aligned)
        ax.set(xlabel=f"PC1 ({100 * evr[0]:.1f}% of variance)")
        ax.set(ylabel=f"PC2 ({100 * evr[1]:.1f}% of variance)")
    else:
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")


def _n_text(results: dict) -> str:
    k = len(results["seeds"])
    t = len(results["snapshot_epochs"])
    return f"n={k} events + twin, {t} snapshots each"


def figures(results: dict) -> dict:
    figs = {}
    model = results["model"]
    views = {
        "first-layer": ("first layer", f"{model['layer']}, {model['layer_params']} params"),
        "whole-model": ("whole model", f"whole model, {model['params']} params"),
    }
    for key, (view, what) in views.items():
        for aligned in (False, True):
            fig, ax = new_figure(width=8.5, height=5.5)
            _draw_trajectories(ax, results, view, "pca", aligned)
            state = "hidden units aligned to event 0" if aligned else "as trained"
            ax.set_title(
                f"PCA of {what} ({state}); one basis for all snapshots\n"
                f"{_n_text(results)}; labels: training accuracy",
                fontsize=10,
            )
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            figs[f"pca-{key}{'-aligned' if aligned else ''}"] = fig

    fig, axes = new_figure(ncols=2, width=6.0, height=5.0)
    for ax, aligned in zip(axes, (False, True), strict=True):
        _draw_trajectories(ax, results, "whole model", "pca+tsne", aligned)
        ax.set_title("hidden units aligned to event 0" if aligned else "as trained", fontsize=10)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"PCA then t-SNE of all whole-model snapshots ({_n_text(results)})")
    figs["pca-tsne"] = fig

    names = [n.replace("twin of event 0", "twin of 0") for n in results["events"]]
    fig, axes = new_figure(ncols=2, width=5.6, height=5.0)
    vmax = max(distance_matrix(results, False).max(), 1e-12)
    for ax, aligned in zip(axes, (False, True), strict=True):
        d = distance_matrix(results, aligned)
        im = ax.imshow(d, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.grid(False)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    f"{d[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if d[i, j] < 0.6 * vmax else "black",
                )
        ax.set_title("aligned to event 0" if aligned else "as trained", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="L2 distance between final weights")
    fig.suptitle(
        f"Distances between final weight vectors (n={len(results['seeds'])} events + twin)"
    )
    figs["final-distances"] = fig
    return figs

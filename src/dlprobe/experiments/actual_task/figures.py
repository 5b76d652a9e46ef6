"""actual-task: the figures, drawn from the saved results alone."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from dlprobe.experiments.common import group_rows
from dlprobe.experiments.plotting import COLORS, mean_band, new_figure


def _style(model: dict) -> str:
    return "-" if model["family"] == "CNN" else "--"


def figures(results: dict) -> dict:
    figs = {}
    by_model = group_rows(results["curves"], "model")
    ds = results["dataset"]["name"]
    panels = [
        ("train-loss", "train_loss", "training loss (cross-entropy)", True),
        ("train-accuracy", "train_accuracy", "training accuracy", False),
        ("test-accuracy", "test_accuracy", "test accuracy", False),
    ]
    for name, metric, ylabel, log in panels:
        fig, ax = new_figure(width=7.5, height=5.5)
        for i, m in enumerate(results["models"]):
            rows = by_model[(m["label"],)]
            xs, runs = _series(rows, metric)
            mean_band(ax, xs, runs, f"{m['label']}, {m['params']} params", COLORS[i], log=log)
            ax.lines[-1].set_linestyle(_style(m))
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(
            xlabel="epoch",
            ylabel=ylabel,
            title=f"{ylabel.capitalize()} on {ds} (CNN solid, MLP dashed; band: min-max)",
        )
        ax.title.set_fontsize(10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        fig.tight_layout()
        figs[name] = fig
    return figs


def _series(rows: list[dict], metric: str) -> tuple[list[int], np.ndarray]:
    """(epochs, (n_seeds, n_epochs)) of one model's metric, epochs sorted."""
    by_seed = group_rows(sorted(rows, key=lambda r: r["epoch"]), "seed")
    xs = [r["epoch"] for r in next(iter(by_seed.values()))]
    return xs, np.array([[r[metric] for r in rs] for rs in by_seed.values()], dtype=float)

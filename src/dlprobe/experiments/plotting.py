"""Plot helpers shared by the experiments' ``figures()``: one look across the report."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

plt.rcParams.update(
    {
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "font.size": 10,
    }
)

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.0, **kw):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)
    return fig, axes


def mean_band(
    ax,
    x: Sequence[float],
    runs: np.ndarray,
    label: str,
    color=None,
    log: bool = False,
) -> None:
    """Mean over runs (rows) as a line and min-max as a band; n in the label.

    With ``log`` the mean is geometric, which is what a log axis shows faithfully.
    """
    runs = np.asarray(runs, dtype=float)  # (n_runs, T)
    if log:
        center = np.exp(np.nanmean(np.log(np.clip(runs, 1e-300, None)), axis=0))
    else:
        center = np.nanmean(runs, axis=0)
    (line,) = ax.plot(x, center, label=f"{label} (n={runs.shape[0]})", color=color, lw=1.6)
    if runs.shape[0] > 1:
        ax.fill_between(
            x, np.nanmin(runs, 0), np.nanmax(runs, 0), color=line.get_color(), alpha=0.18, lw=0
        )


def close_all() -> None:
    plt.close("all")


def batch_axis(ax, sizes: list[int], n_train: int) -> None:
    """Log x-axis with one labelled tick per batch size; the full batch reads ``full``."""
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"full\n{s}" if s == n_train else str(s) for s in sizes], fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("batch size (log scale)")


def twin_axis(ax):
    """A right-hand y-axis sharing x, with its spine shown and no second grid."""
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)
    ax2.grid(False)
    return ax2


def joint_legend(ax, ax2, **kw) -> None:
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, **kw)

"""One look for every figure of the report, applied while figures are drawn (not on import),
and the plot helpers the experiments share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

STYLE = {
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}
COLORS = list(matplotlib.colors.TABLEAU_COLORS.values())


@contextmanager
def style() -> Iterator[None]:
    """The report's style for the figures drawn inside this block."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(
    ncols: int = 1,
    nrows: int = 1,
    width: float = 6.0,
    height: float = 4.0,
    layout: str | None = None,
    **kw,
):
    """A figure of ``ncols`` x ``nrows`` axes, each ``width`` x ``height`` inches; ``kw`` go
    to ``Figure.subplots`` (``sharey``, ``squeeze``, ...), ``layout`` to the figure.

    Figures are made without pyplot, so nothing is kept in a global figure list.
    """
    fig = Figure(figsize=(width * ncols, height * nrows), layout=layout)
    axes = fig.subplots(nrows, ncols, **kw)
    return fig, axes


def mean_band(
    ax,
    x: Sequence[float],
    runs: np.ndarray,
    label: str,
    color=None,
    log: bool = False,
    **line_style,
):
    """Mean over runs (rows) as a line and min-max as a band; n in the label.

    With ``log`` the mean is geometric, which is what a log axis shows faithfully.
    NaN entries (diverged runs) are left out of the mean and the band. ``line_style``
    (e.g. ``ls="--"``, ``marker="o"``) goes to the line. Returns the line, or None when
    no run has a finite value (nothing is drawn).
    """
    runs = np.atleast_2d(np.asarray(runs, dtype=float))  # (n_runs, T)
    keep = ~np.all(np.isnan(runs), axis=1)
    runs = runs[keep]
    if runs.size == 0:
        return None
    with np.errstate(all="ignore"):
        if log:
            center = np.exp(np.nanmean(np.log(np.clip(runs, 1e-300, None)), axis=0))
        else:
            center = np.nanmean(runs, axis=0)
    line_style = {"lw": 1.6, **line_style}
    (line,) = ax.plot(x, center, label=f"{label} (n={runs.shape[0]})", color=color, **line_style)
    if runs.shape[0] > 1:
        ax.fill_between(
            x, np.nanmin(runs, 0), np.nanmax(runs, 0), color=line.get_color(), alpha=0.18, lw=0
        )
    return line


def log_scale_if_positive(ax, values: np.ndarray, axis: str = "y") -> None:
    """A log axis when every finite value is positive (a log axis of nothing fails)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size and (v > 0).all():
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


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


def no_data(ax, message: str) -> None:
    """An empty panel that says why (e.g. every run diverged)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])

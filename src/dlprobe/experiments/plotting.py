"""Plot helpers shared by the experiments' ``figures()``: one look across the report."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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

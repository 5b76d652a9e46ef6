"""Figures of a batch-size comparison: one panel per measure against batch size, and the
trend under every budget protocol side by side."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..plotting import COLORS, batch_axis, mean_band, new_figure, no_data
from ..stats import column
from .protocol import PROTOCOL_NAMES
from .select import batch_sizes_of, by_batch, counted, main_runs, protocols_of, trend_text
from .text import main_label, protocol_label

NONE_COUNTED = "no model counted:\nevery one diverged, collapsed or missed the target"


def batch_panel(
    ax, runs: Sequence[dict], n_train: int, metrics: dict, log: bool = False, first_color: int = 0
) -> None:
    """Each of ``metrics`` (result field -> legend label) against batch size on ``ax``:
    the mean over seeds as a line (geometric with ``log``) and the min-max as a band; with
    no runs, a panel that says none was counted."""
    if not runs:
        no_data(ax, NONE_COUNTED)
        return
    for i, (metric, label) in enumerate(metrics.items()):
        sizes, values = by_batch(runs, metric)  # (n_seeds, n_sizes)
        mean_band(ax, sizes, values, label, COLORS[first_color + i], log=log)
    if log:
        ax.set_yscale("log")
    batch_axis(ax, batch_sizes_of(runs), n_train)


def batch_grid(results: dict, panels: list[tuple[str, dict, bool]], ncols: int, title: str):
    """Panels (title, {field: legend label}, log axis) against batch size, main runs."""
    runs, n_train = main_runs(results["runs"]), results["dataset"]["n_train"]
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.4, height=3.6, squeeze=False)
    for i, (ax, (name, metrics, log)) in enumerate(zip(axes.flat, panels, strict=False)):
        batch_panel(ax, runs, n_train, metrics, log=log, first_color=i * (len(metrics) == 1))
        ax.set_title(name, fontsize=9)
        if runs:
            ax.legend(fontsize=7)
    fig.suptitle(f"{title}; {main_label(results)}; n={len(runs)} models")
    fig.tight_layout()
    return fig


def protocol_figure(results: dict, rows: dict, title: str):
    """The trend under every protocol that ran, side by side: one column per protocol, one
    row per measure (``rows``: field -> (label, log axis)) and a last row with the training
    loss each model reached. Counted runs: mean line and min-max band; runs that missed
    the target: crosses (left out under ``converged``, counted under the others)."""
    runs, n_train, budget = results["runs"], results["dataset"]["n_train"], results["budget"]
    protocols = protocols_of(runs)
    panels = {**rows, "train_loss": ("training loss reached", True)}
    fig, axes = new_figure(
        ncols=len(protocols), nrows=len(panels), width=4.3 if len(protocols) > 1 else 6.5,
        height=2.9, squeeze=False, sharey="row", layout="constrained",
    )  # fmt: skip
    for j, protocol in enumerate(protocols):
        rs, own = counted(runs, protocol), [r for r in runs if r["protocol"] == protocol]
        missed = [r for r in own if r["status"] == "not converged"]
        for i, (metric, (label, log)) in enumerate(panels.items()):
            ax = axes[i, j]
            ax.set_title(
                f"{PROTOCOL_NAMES[protocol]}: {trend_text(rs, metric)}"
                if metric != "train_loss"
                else protocol_label(protocol, budget),
                fontsize=8,
            )
            ax.set_ylabel(label if j == 0 else "", fontsize=8)
            if rs:
                batch_panel(ax, rs, n_train, {metric: "counted, mean"}, log=log, first_color=i)
            if missed:
                fate = "left out" if protocol == "converged" else "counted"
                ax.scatter(
                    column(missed, "batch_size"), column(missed, metric), marker="x",
                    color="tab:red", label=f"missed target, {fate} (n={len(missed)})", zorder=3,
                )  # fmt: skip
            if not rs and not missed:
                no_data(ax, NONE_COUNTED)
                continue
            if metric == "train_loss" and budget["train_loss"] > 0:
                ax.axhline(budget["train_loss"], color="gray", ls="--", lw=1, label="target")
            batch_axis(ax, batch_sizes_of(own), n_train)
            if i < len(panels) - 1:
                ax.set_xlabel("")
            if log:
                ax.set_yscale("log")
            ax.legend(fontsize=6)
    seeds = len(results["seeds"])
    fig.suptitle(f"{title} ({seeds} seed(s) per batch size; ρ: Spearman with log batch size)")
    if len(protocols) == 1:
        fig.supxlabel("only this protocol ran: --protocol all adds the others", fontsize=8)
    return fig

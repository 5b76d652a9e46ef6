"""Dinh et al. (2017): the same function made sharp or flat by rescaling ReLU layers.

Scaling one layer of a ReLU network by a and the next by 1/a keeps its function (positive
homogeneity) while any parameter-space sharpness may change. ``rescaled_rows`` measures a
model at several factors, ``rescaling_line`` says in one computed sentence what changed
and what did not, and ``rescaling_figure`` draws it. An empty list of rows (the model to
rescale diverged) gives a sentence and a figure that say so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dlprobe.data import Dataset
from dlprobe.measure.rescale import rescale_relu_layers

from .batches import split_metrics
from .plotting import COLORS, joint_legend, new_figure, no_data, twin_axis
from .stats import column, finite


def rescaled_rows(
    model: nn.Module,
    layer: int,
    factors: Sequence[float],
    data: Dataset,
    measure: Callable[[nn.Module], dict],
) -> list[dict]:
    """Per factor a (and 1): the model with Linear layer ``layer`` scaled by a and the next
    by 1/a, its loss and accuracy on both splits, its largest output change on the test
    inputs and ``measure(scaled model)``."""
    out = []
    with torch.no_grad():
        reference = model(data.x_test)  # (n_test, C)
    for a in sorted(set(factors) | {1.0}):
        scaled = rescale_relu_layers(model, layer, float(a))
        with torch.no_grad():
            change = (scaled(data.x_test) - reference).abs().max().item()
        row = {"factor": float(a), **split_metrics(scaled, data), "max_output_change": change}
        out.append({**row, **measure(scaled)})
    return out


def spread(rows: list[dict], metric: str) -> float:
    """max / min of a measure over the rescaling factors (NaN when it has no values)."""
    v = finite(r[metric] for r in rows)
    return float(v.max() / v.min()) if v.size else math.nan


def rescaling_line(rows: list[dict], src: dict, names: Mapping[str, str]) -> tuple[str, bool]:
    """The report's sentence, and whether the function stayed the same while the first
    measure of ``names`` (metric -> short name) changed at least 2x."""
    head = f"Dinh et al.: rescaling layer {src['layer']} by a and layer {src['layer'] + 1} by 1/a"
    if not rows:
        return (
            f"{head}: not measured, every model of batch size {src['batch_size']} diverged.",
            False,
        )
    a, change, loss, acc = (
        finite(r[m] for r in rows)
        for m in ("factor", "max_output_change", "train_loss", "test_accuracy")
    )
    first = next(iter(names))
    ratio = spread(rows, first)
    # float32 outputs of a rescaled ReLU net agree to rounding, not bit for bit
    same = change.max() <= 1e-4 * (1 + np.abs(loss).max()) and np.ptp(acc) == 0
    if not same:
        verdict = "here the rescaling does not keep the function."
    elif ratio >= 2:
        verdict = (
            "the same function can be made sharp or flat, so sharpness alone cannot explain "
            "its generalization."
        )
    else:
        verdict = f"here the rescaling hardly changes the {names[first]}."
    varies = ", ".join(f"{n} {spread(rows, m):.1f}x" for m, n in names.items())
    return (
        f"{head} (a from {a.min():g} to {a.max():g}, one model of batch size "
        f"{src['batch_size']}) changes the outputs by at most {change.max():.1e}, the training "
        f"loss by {np.ptp(loss):.1e} and the test accuracy by {np.ptp(acc):.3f}, while the "
        f"measures vary (max/min): {varies}; {verdict}"
    ), bool(same and ratio >= 2)


def rescaling_figure(rows: list[dict], src: dict, measures: Mapping[str, str]):
    """Left: each measure relative to its value at a = 1 (log-log); right: loss and accuracy
    of the rescaled model on both splits."""
    fig, (ax, ax_r) = new_figure(ncols=2, width=5.2, height=4.2)
    title = (
        f"Dinh et al.: layer {src['layer']} × a, layer {src['layer'] + 1} × 1/a "
        f"(one model: batch size {src['batch_size']}, seed {src['seed']}; n=1)"
    )
    fig.suptitle(title, fontsize=10)
    if not rows:
        for panel in (ax, ax_r):
            no_data(panel, "not measured: every model of this batch size diverged")
        return fig
    a = column(rows, "factor")
    ref = next(r for r in rows if r["factor"] == 1.0)
    for i, (metric, label) in enumerate(measures.items()):
        ax.plot(a, column(rows, metric) / (ref[metric] or np.nan), "o-", color=COLORS[i],
                label=label.split(" (")[0])  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="rescaling factor a (log scale)",
           ylabel="measure / its value at a = 1 (log)")  # fmt: skip
    ax.set_title("sharpness of the same function", fontsize=10)
    ax.legend(fontsize=7)
    ax2 = twin_axis(ax_r)
    for i, split in enumerate(("train", "test")):
        ax_r.plot(a, column(rows, f"{split}_loss"), "o-", color=COLORS[i], label=f"{split} loss")
        ax2.plot(a, column(rows, f"{split}_accuracy"), "s--", color=COLORS[i],
                 label=f"{split} accuracy (right)")  # fmt: skip
    losses = finite(r[f"{s}_loss"] for r in rows for s in ("train", "test"))
    ax_r.set_ylim(0, 1.25 * max(losses, default=1.0))
    ax_r.set(xscale="log", xlabel="rescaling factor a (log scale)",
             ylabel="cross-entropy loss (solid)")  # fmt: skip
    ax2.set(ylim=(0, 1.02), ylabel="accuracy (dashed)")
    ax_r.set_title("loss and accuracy: unchanged", fontsize=10)
    joint_legend(ax_r, ax2, fontsize=7, loc="lower center", ncol=2)
    fig.tight_layout()
    return fig

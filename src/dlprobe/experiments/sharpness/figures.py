"""sharpness: the figures, drawn from the saved results alone."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.classification import by_batch
from dlprobe.experiments.plotting import (
    COLORS,
    batch_axis,
    joint_legend,
    mean_band,
    new_figure,
    twin_axis,
)
from dlprobe.experiments.sharpness.protocol import MEASURES


def figures(results: dict) -> dict:
    n_train = results["data"]["n_train"]
    n = len(results["seeds"])
    fig, axes = new_figure(ncols=3, nrows=2, width=4.4, height=3.6)
    panels = list(MEASURES.items())
    for i, (ax, (metric, label)) in enumerate(zip(axes.flat[:4], panels, strict=True)):
        sizes, runs = by_batch(results, metric)
        log = metric != "valley_width"
        mean_band(ax, sizes, runs, "mean, band min-max", COLORS[i], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        batch_axis(ax, sizes, n_train)
        ax.legend(fontsize=7)
    axes[1, 0].set_title(f"valley width at loss rise {results['valley_height']:g}", fontsize=9)
    for ax, (metric, label, log) in zip(
        axes.flat[4:],
        (("accuracy", "accuracy", False), ("loss", "cross-entropy loss", True)),
        strict=True,
    ):
        for i, split in enumerate(("train", "test")):
            sizes, runs = by_batch(results, f"{split}_{metric}")
            mean_band(ax, sizes, runs, split, COLORS[i], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"training and test {label}", fontsize=9)
        batch_axis(ax, sizes, n_train)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Sharpness (ε={results['epsilon']:g}, {results['sharpness_examples']} training "
        f"examples) and accuracy vs batch size; n={n} seed(s) per batch size"
    )
    fig.tight_layout()
    figs = {"sharpness-vs-batch-size": fig}

    dinh = results["dinh"]
    a = [r["factor"] for r in dinh]
    ref = next(r for r in dinh if r["factor"] == 1.0)
    src = results["dinh_source"]
    fig, (ax, ax_r) = new_figure(ncols=2, width=5.2, height=4.2)
    for i, (metric, label) in enumerate(MEASURES.items()):
        ax.plot(
            a,
            [
                r[metric] / ref[metric] if r[metric] is not None and ref[metric] else np.nan
                for r in dinh
            ],
            "o-",
            color=COLORS[i],
            label=label.split(" (")[0],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="rescaling factor a (log scale)", ylabel="measure / its value at a = 1 (log)")
    ax.set_title("sharpness of the same function", fontsize=10)
    ax.legend(fontsize=7)
    ax2 = twin_axis(ax_r)
    for i, split in enumerate(("train", "test")):
        ax_r.plot(
            a, [r[f"{split}_loss"] for r in dinh], "o-", color=COLORS[i], label=f"{split} loss"
        )
        ax2.plot(
            a,
            [r[f"{split}_accuracy"] for r in dinh],
            "s--",
            color=COLORS[i],
            label=f"{split} accuracy (right)",
        )
    ax_r.set_xscale("log")
    losses = [r[f"{s}_loss"] for r in dinh for s in ("train", "test")]
    ax_r.set_ylim(0, 1.25 * max(losses))
    ax2.set_ylim(0, 1.02)
    ax_r.set(xlabel="rescaling factor a (log scale)", ylabel="cross-entropy loss (solid)")
    ax2.set_ylabel("accuracy (dashed)")
    ax_r.set_title("loss and accuracy: unchanged", fontsize=10)
    joint_legend(ax_r, ax2, fontsize=7, loc="lower center", ncol=2)
    fig.suptitle(
        f"Dinh et al.: layer {src['layer']} × a, layer {src['layer'] + 1} × 1/a "
        f"(one model: batch size {src['batch_size']}, seed {src['seed']}; n=1)",
        fontsize=10,
    )
    fig.tight_layout()
    figs["dinh-rescaling"] = fig
    return figs

"""sensitivity: the figures, drawn from the saved results alone."""

from __future__ import annotations

from dlprobe.experiments.classification import by_batch
from dlprobe.experiments.plotting import (
    COLORS,
    batch_axis,
    joint_legend,
    mean_band,
    new_figure,
    twin_axis,
)

SENSITIVITIES = {
    "sensitivity_loss_gradient": "sensitivity ‖∂loss/∂x‖ (homework)",
    "sensitivity_jacobian": "sensitivity ‖∂softmax/∂x‖ (Novak et al.)",
}


def _two_axis_figure(results: dict, left: str, left_label: str, log_left: bool):
    n_train = results["data"]["n_train"]
    fig, ax = new_figure(width=7.0, height=4.6)
    for i, split in enumerate(("train", "test")):
        sizes, runs = by_batch(results, f"{split}_{left}")
        mean_band(ax, sizes, runs, f"{split} {left_label}", COLORS[i], log=log_left)
    if log_left:
        ax.set_yscale("log")
    ax.set_ylabel(f"{left_label}{' (log scale)' if log_left else ''}")
    ax2 = twin_axis(ax)
    sizes, runs = by_batch(results, "sensitivity_loss_gradient")
    mean_band(ax2, sizes, runs, "sensitivity (right axis)", COLORS[2])
    for line in ax2.get_lines():
        line.set_linestyle("--")
    ax2.set_ylabel("sensitivity: mean ‖∂loss/∂x‖ over test examples", color=COLORS[2])
    batch_axis(ax, sizes, n_train)
    joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title(
        f"{left_label.capitalize()} and sensitivity vs batch size "
        f"({results['data']['name']}, n={len(results['seeds'])} seeds per batch size)",
        fontsize=10,
    )
    return fig


def figures(results: dict) -> dict:
    figs = {
        "loss-sensitivity": _two_axis_figure(results, "loss", "cross-entropy loss", True),
        "accuracy-sensitivity": _two_axis_figure(results, "accuracy", "accuracy", False),
    }
    n_train = results["data"]["n_train"]
    n = len(results["seeds"])
    fig, axes = new_figure(ncols=3, width=4.4, height=4.0)
    panels = [
        *SENSITIVITIES.items(),
        ("sharpness", f"sharpness ({results['sharpness_method']}, ε={results['epsilon']:g})"),
    ]
    for i, (ax, (metric, label)) in enumerate(zip(axes, panels, strict=True)):
        sizes, runs = by_batch(results, metric)
        log = metric == "sharpness"
        mean_band(ax, sizes, runs, "mean, band min-max", COLORS[i + 2], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        batch_axis(ax, sizes, n_train)
        ax.legend(fontsize=8)
    for ax in axes[:2]:
        ax.set_ylabel(f"Frobenius norm, mean over {results['sensitivity_examples']} test examples")
    axes[2].set_ylabel(f"relative loss rise, {results['sharpness_examples']} training examples")
    fig.suptitle(f"Both sensitivities and sharpness vs batch size (n={n} seeds per batch size)")
    fig.tight_layout()
    figs["sensitivity-sharpness"] = fig
    return figs

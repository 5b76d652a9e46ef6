"""random-labels: the figures, drawn from the saved results alone."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.common import group_rows
from dlprobe.experiments.plotting import COLORS, mean_band, new_figure
from dlprobe.experiments.random_labels.protocol import pct


def _level_colors(levels: list[float]) -> dict[float, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["plasma"]
    hi = max(levels)
    return {p: cmap(0.85 * p / hi) for p in levels}


def _curve(results: dict, noise: float, metric: str) -> tuple[list, np.ndarray]:
    rows = [r for r in results["curves"] if r["noise"] == noise]
    by_seed = group_rows(rows, "seed")
    xs = [r["epoch"] for r in next(iter(by_seed.values()))]
    return xs, np.array([[r[metric] for r in rs] for rs in by_seed.values()], dtype=float)


def _true_vs_random(results: dict, metric: str, ylabel: str, log: bool):
    fig, ax = new_figure()
    worst = max(results["noise_levels"])
    random_name = "random labels" if worst == 1.0 else f"{pct(worst)} random labels"
    for p, color, label in ((0.0, COLORS[0], "true labels"), (worst, COLORS[3], random_name)):
        for split, style in (("train", "-"), ("test", "--")):
            xs, runs = _curve(results, p, f"{split}_{metric}")
            mean_band(ax, xs, runs, f"{split}, {label}", color, log=log)
            ax.lines[-1].set_linestyle(style)
    if log:
        ax.set_yscale("log")
    d = results["data"]
    ax.set(
        xlabel="epoch",
        ylabel=ylabel,
        title=f"{ylabel.capitalize()}: true vs random labels "
        f"({d['dataset']}, {d['n_train']} train)",
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


def _noise_curves(results: dict):
    levels = results["noise_levels"]
    colors = _level_colors(levels)
    fig, axes = new_figure(ncols=2, sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for p in levels:
            xs, runs = _curve(results, p, f"{split}_accuracy")
            mean_band(ax, xs, runs, f"{pct(p)} noise", colors[p])
        ax.set(
            xlabel="epoch",
            title=f"{split} accuracy ({split} labels: "
            f"{'corrupted' if split == 'train' else 'true'})",
        )
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Accuracy per epoch at each label-noise level ({results['data']['dataset']})")
    fig.tight_layout()
    return fig


def _per_level(results: dict, metric: str) -> tuple[list[float], list[list[float]]]:
    by = group_rows(results["final"], "noise")
    levels = results["noise_levels"]
    return levels, [[r[metric] for r in by[(p,)]] for p in levels]


def _scatter_mean(ax, levels, values, color, label, n: int, log: bool = False) -> None:
    """One dot per run, and the mean (geometric on log axes) per level as a line."""
    for p, vs in zip(levels, values, strict=True):
        vs = [v for v in vs if v is not None]
        ax.scatter([100 * p] * len(vs), vs, color=color, s=14, alpha=0.5, lw=0)
    means = [
        (np.exp(np.mean(np.log(vs))) if log else np.mean(vs)) if vs else np.nan
        for vs in ([v for v in vs if v is not None] for vs in values)
    ]
    ax.plot(
        [100 * p for p in levels], means, color=color, marker="o", lw=1.6, label=f"{label} (n={n})"
    )
    if log:
        ax.set_yscale("log")


def _noise_fit(results: dict):
    fig, (ax1, ax2) = new_figure(ncols=2)
    levels = results["noise_levels"]
    n = len(results["seeds"])  # runs per level
    for metric, label, color in (
        ("train_accuracy", "final train accuracy (corrupted labels)", COLORS[0]),
        ("test_accuracy", "final test accuracy", COLORS[1]),
        ("peak_test_accuracy", "peak test accuracy during training", COLORS[2]),
    ):
        _scatter_mean(ax1, levels, _per_level(results, metric)[1], color, label, n)
    ax1.set(xlabel="labels randomized (%)", ylabel="accuracy", title="Accuracy vs label noise")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    epochs = _per_level(results, "epochs_to_fit")[1]
    budget = results["epochs"]
    fitted = [[e for e in es if e is not None] for es in epochs]
    _scatter_mean(ax2, levels, fitted, COLORS[3], "epochs to fit, runs per level", n)
    for p, es in zip(levels, epochs, strict=True):
        missed = sum(e is None for e in es)
        if missed:
            ax2.scatter([100 * p], [budget], marker="x", color="black", s=40, zorder=3)
            ax2.annotate(
                f"{missed} not fitted",
                (100 * p, budget),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax2.set(
        xlabel="labels randomized (%)",
        ylabel="epochs",
        title=f"First epoch with train accuracy >= {results['fit_accuracy']:g}",
        ylim=(0, budget * 1.1),
    )
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    return fig


def _noise_complexity(results: dict):
    fig, axes = new_figure(ncols=2, nrows=2, width=5.0, height=3.4)
    levels = results["noise_levels"]
    n = len(results["seeds"])  # runs per level
    c = results["critical"]
    panels = [
        (
            "critical_ratio",
            f"critical-sample ratio (r={c['radius']:g}, {c['examples']} train inputs)",
            False,
        ),
        ("l2_total", "L2 norm of all parameters", False),
        ("spectral_product", "product of layer spectral norms", True),
        ("path_norm", "L2 path norm", True),
    ]
    for ax, (metric, title, log), color in zip(axes.flat, panels, COLORS, strict=False):
        _scatter_mean(ax, levels, _per_level(results, metric)[1], color, "mean", n, log=log)
        ax.set(xlabel="labels randomized (%)", title=title)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.suptitle("Complexity of the final models vs label noise")
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    return {
        "loss": _true_vs_random(results, "loss", "cross-entropy loss", log=True),
        "accuracy": _true_vs_random(results, "accuracy", "accuracy", log=False),
        "noise-curves": _noise_curves(results),
        "noise-fit": _noise_fit(results),
        "noise-complexity": _noise_complexity(results),
    }

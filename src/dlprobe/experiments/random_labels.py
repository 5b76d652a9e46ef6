"""HW1-3 generalization: can a network fit random labels?

Protocol (Zhang et al. 2017; Arpit et al. 2017): randomize a share p of the training labels
(test labels stay true) and train the same MLP on each level, p = 0 (true labels) to 1, as a
population of seeds. All levels share the model seeds and training inputs; a level's
corrupted examples include those of every lower level (one seeded permutation cut at p * n).
Per run: epochs to fit the labels trained on, peak and final test accuracy, the
critical-sample ratio on fixed training inputs and the weight norms of the final model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import matplotlib
import numpy as np
import torch

from dlprobe.config import Bound, Fraction, NonNegInt, PosFloat, PosInt, Seed, one_of, require
from dlprobe.data import CORRUPTION_MODES, Dataset, corrupt_labels
from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    DatasetName,
    Experiment,
    Notes,
    RunContext,
    check_batch_sizes,
    data_record,
    group_rows,
    mean_band,
    mean_std,
    mlp_population,
    n_train_of,
    new_figure,
    series,
)
from dlprobe.experiments.kit.stats import diverged_lines, pearson
from dlprobe.measure.critical import critical_sample_ratio
from dlprobe.measure.norms import weight_norms
from dlprobe.models import mlp_param_count
from dlprobe.train import History, Population, TrainConfig

NORMS = ("l2_total", "spectral_product", "path_norm")
# per-run results whose mean over seeds the report quotes
MEANS = ("train_accuracy", "test_accuracy", "peak_test_accuracy", "peak_test_epoch",
         "critical_ratio", "l2_total", "path_norm")  # fmt: skip


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 0  # training examples used (seeded subset); 0 = the whole split
    hidden: tuple[PosInt, ...] = (256, 256, 256)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    # shares of the training labels randomized, one population each; must include 0
    noise_levels: tuple[Fraction, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    # "shuffle": permute the chosen labels among themselves; "uniform": redraw them
    corruption: one_of(CORRUPTION_MODES, "corruption") = "shuffle"
    seeds: PosInt = 3  # training runs per noise level, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i; also seeds the subset and the label noise
    # peak lr 3e-3 with cosine decay (ends near 0), batches of 64; evaluated every epoch, so
    # the curves show the early rise of test accuracy
    train: TrainConfig = TrainConfig(lr=3e-3, schedule="cosine", epochs=50)
    # training accuracy (on the corrupted labels) that counts as fitted
    fit_accuracy: Annotated[float, Bound(gt=0, le=1)] = 0.99
    critical_examples: PosInt = 300  # training inputs searched for critical samples (the first)
    critical_radius: PosFloat = 0.1  # half-width of the L-inf box around an input, input units
    critical_steps: PosInt = 20  # signed-gradient steps of the search for a label flip

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs at least one layer width")
        levels = self.noise_levels
        require(len(set(levels)) == len(levels), f"noise_levels has repeated values: {levels}")
        require(
            0.0 in levels and max(levels) > 0,
            "noise_levels must contain 0 (true labels) and at least one level > 0",
        )
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes([self.train.batch_size], n_train, "train.batch_size")


PROFILES = {
    "smoke": {
        "train_subset": 128,
        "hidden": (32, 32, 32),
        "noise_levels": (0.0, 0.5, 1.0),
        "seeds": 2,
        "train.epochs": 4,
        "train.batch_size": 32,
        "critical_examples": 16,
        "critical_steps": 3,
    },
    "full": {
        "dataset": "mnist",
        "train.lr": 1e-3,
        "train.epochs": 200,
        "train.batch_size": 128,
        "critical_examples": 1000,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    clean = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    widths = [clean.input_dim, *cfg.hidden, clean.num_classes]
    x_critical = clean.x_train[: cfg.critical_examples]  # (n_c, ...) the same at every level
    curves, finals, levels = [], [], []
    for p, data in noisy_copies(cfg, clean).items():
        changed = (data.y_train != clean.y_train).float().mean().item()
        levels.append({"noise": p, "labels_changed": changed})
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
        hist = ctx.train(f"noise-{p:g}", pop, data, cfg.train)
        curves += [
            {"noise": p, **{k: v for k, v in row.items() if k != "model"}}
            for row in hist.epoch_records()
        ]
        probes = ctx.stage(f"probe-noise-{p:g}", lambda _, pop=pop: _probe(cfg, pop, x_critical))
        finals += _final_rows(cfg, p, hist, probes["rows"])
        ctx.log(f"  noise {p:g}: final test accuracy {np.mean(hist.final('test_accuracy')):.3f}")
    params = mlp_param_count(widths, cfg.activation)
    return {
        "model": {"widths": widths, "activation": cfg.activation, "params": params},
        "dataset": {**data_record(clean), "num_classes": clean.num_classes},
        "noise_levels": list(cfg.noise_levels),
        "levels": levels,
        "fit_accuracy": cfg.fit_accuracy,
        "critical": {
            "examples": len(x_critical),
            "radius": cfg.critical_radius,
            "steps": cfg.critical_steps,
        },
        "epochs": cfg.train.epochs,
        "seeds": pop.seeds,
        "curves": curves,
        "final": finals,
    }


def noisy_copies(cfg: Config, clean: Dataset) -> dict[float, Dataset]:
    """One label-corrupted copy of ``clean`` per noise level; only ``y_train`` differs."""
    return {
        p: corrupt_labels(clean, p, seed=cfg.seed, mode=cfg.corruption) for p in cfg.noise_levels
    }


def _probe(cfg: Config, pop: Population, x_critical: torch.Tensor) -> dict:
    """Critical-sample ratio and weight norms of every final model."""
    rows = []
    for model in pop.models_list():
        csr = critical_sample_ratio(
            model, x_critical, cfg.critical_radius, steps=cfg.critical_steps, seed=cfg.seed
        )
        norms = weight_norms(model)
        rows.append({"critical_ratio": csr.ratio, **{n: getattr(norms, n) for n in NORMS}})
    return {"rows": rows}


def _final_rows(cfg: Config, p: float, hist: History, probes: list[dict]) -> list[dict]:
    """Per model: final metrics, epochs to fit, peak test accuracy, and its probes."""
    rows = []
    for k, final in enumerate(hist.final_records()):
        train_acc = [a[k] for a in hist.train_accuracy]  # per evaluated epoch
        test_acc = [a[k] for a in hist.test_accuracy]
        best = int(np.argmax(test_acc))
        fitted = [e for e, a in zip(hist.epochs, train_acc, strict=True) if a >= cfg.fit_accuracy]
        peak = {"peak_test_accuracy": test_acc[best], "peak_test_epoch": hist.epochs[best]}
        fit = {"epochs_to_fit": fitted[0] if fitted else None}
        rows.append({"noise": p, **final, **fit, **peak, **probes[k]})
    return rows


def pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def _level_colors(levels: list[float]) -> dict[float, tuple]:
    cmap, hi = matplotlib.colormaps["plasma"], max(levels)
    return {p: cmap(0.85 * p / hi) for p in levels}


def _curve(results: dict, noise: float, metric: str) -> tuple[list, np.ndarray]:
    """(epochs, values (n_seeds, n_epochs)) of one metric at one noise level."""
    return series([r for r in results["curves"] if r["noise"] == noise], "epoch", metric)


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
    d = results["dataset"]
    title = f"{ylabel.capitalize()}: true vs random labels ({d['name']}, {d['n_train']} train)"
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


def _noise_curves(results: dict):
    levels, colors = results["noise_levels"], _level_colors(results["noise_levels"])
    fig, axes = new_figure(ncols=2, sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for p in levels:
            xs, runs = _curve(results, p, f"{split}_accuracy")
            mean_band(ax, xs, runs, f"{pct(p)} noise", colors[p])
        labels = "corrupted" if split == "train" else "true"
        ax.set(xlabel="epoch", title=f"{split} accuracy ({split} labels: {labels})")
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Accuracy per epoch at each label-noise level ({results['dataset']['name']})")
    fig.tight_layout()
    return fig


def _per_level(results: dict, metric: str) -> list[list]:
    """``metric`` of every run, one list per noise level (None where undefined)."""
    by = group_rows(results["final"], "noise")
    return [[r[metric] for r in by[(p,)]] for p in results["noise_levels"]]


def _scatter_mean(ax, results: dict, metric: str, color, label: str, log: bool = False) -> None:
    """One dot per run, and the mean (geometric on log axes) per level as a line."""
    levels, n = results["noise_levels"], len(results["seeds"])  # n: runs per level
    values = [[v for v in vs if v is not None] for vs in _per_level(results, metric)]
    for p, vs in zip(levels, values, strict=True):
        ax.scatter([100 * p] * len(vs), vs, color=color, s=14, alpha=0.5, lw=0)
    means = [
        (np.exp(np.mean(np.log(vs))) if log else np.mean(vs)) if vs else np.nan for vs in values
    ]
    x = [100 * p for p in levels]
    ax.plot(x, means, color=color, marker="o", lw=1.6, label=f"{label} (n={n})")
    if log:
        ax.set_yscale("log")


def _noise_fit(results: dict):
    fig, (ax1, ax2) = new_figure(ncols=2)
    for metric, label, color in (
        ("train_accuracy", "final train accuracy (corrupted labels)", COLORS[0]),
        ("test_accuracy", "final test accuracy", COLORS[1]),
        ("peak_test_accuracy", "peak test accuracy during training", COLORS[2]),
    ):
        _scatter_mean(ax1, results, metric, color, label)
    ax1.set(xlabel="labels randomized (%)", ylabel="accuracy", title="Accuracy vs label noise")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    _scatter_mean(ax2, results, "epochs_to_fit", COLORS[3], "epochs to fit, runs per level")
    budget = results["epochs"]
    for p, es in zip(results["noise_levels"], _per_level(results, "epochs_to_fit"), strict=True):
        missed = sum(e is None for e in es)
        if missed:  # runs that never fitted: a cross at the epoch budget
            ax2.scatter([100 * p], [budget], marker="x", color="black", s=40, zorder=3)
            ax2.annotate(f"{missed} not fitted", (100 * p, budget), fontsize=7,
                         textcoords="offset points", xytext=(4, 4))  # fmt: skip
    title = f"First epoch with train accuracy >= {results['fit_accuracy']:g}"
    ax2.set(xlabel="labels randomized (%)", ylabel="epochs", title=title, ylim=(0, budget * 1.1))
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    return fig


def _noise_complexity(results: dict):
    fig, axes = new_figure(ncols=2, nrows=2, width=5.0, height=3.4)
    c = results["critical"]
    panels = [
        ("critical_ratio", f"critical-sample ratio (r={c['radius']:g}, {c['examples']} train "
         "inputs)", False),
        ("l2_total", "L2 norm of all parameters", False),
        ("spectral_product", "product of layer spectral norms", True),
        ("path_norm", "L2 path norm", True),
    ]  # fmt: skip
    for ax, (metric, title, log), color in zip(axes.flat, panels, COLORS, strict=False):
        _scatter_mean(ax, results, metric, color, "mean", log=log)
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


def notes(results: dict) -> Notes:
    levels, n, d = results["noise_levels"], len(results["seeds"]), results["dataset"]
    mu, fit, top, summary = {}, {}, max(levels), {}
    for (p,), rows in group_rows(results["final"], "noise").items():
        mu[p] = {k: mean_std(r[k] for r in rows)[0] for k in MEANS}  # metric -> mean over seeds
        fitted = [r["epochs_to_fit"] for r in rows if r["epochs_to_fit"] is not None]
        fit[p] = (float(np.median(fitted)) if fitted else float("nan"), len(fitted), len(rows))
    for p in levels:
        (med, fitted, runs), m = fit[p], mu[p]
        summary[f"{pct(p)} noise: epochs to fit (median), runs fitted"] = [med, f"{fitted}/{runs}"]
        accuracy = [m["train_accuracy"], m["test_accuracy"]]
        summary[f"{pct(p)} noise: final train / test accuracy"] = accuracy
        summary[f"{pct(p)} noise: peak test accuracy"] = m["peak_test_accuracy"]
        summary[f"{pct(p)} noise: critical ratio / L2 norm"] = [m["critical_ratio"], m["l2_total"]]
    by_level = ", ".join(
        f"{pct(p)}{' (true labels)' if p == 0 else ''} {fitted}/{runs}"
        + (f" (median epoch {med:g})" if fitted else "")
        for p, (med, fitted, runs) in fit.items()
    )
    changed = {r["noise"]: r["labels_changed"] for r in results["levels"]}
    med0, med1 = fit[0.0][0], fit[top][0]
    slower = (
        f"; fitting them took {med1 / med0:.1f}x the epochs of true labels (medians)."
        if np.isfinite(med0) and np.isfinite(med1)
        else "."
    )
    true, noisy = mu[0.0], mu[top]
    test_by_level = ", ".join(f"{pct(p)} {mu[p]['test_accuracy']:.3f}" for p in levels)
    drops = "; ".join(
        f"{pct(p)}: peak {mu[p]['peak_test_accuracy']:.3f} at epoch "
        f"{mu[p]['peak_test_epoch']:.0f} -> final {mu[p]['test_accuracy']:.3f}"
        for p in levels
        if p != 0.0
    )
    lines = [
        f"Runs reaching train accuracy {results['fit_accuracy']:g} on their (corrupted) labels "
        f"within {results['epochs']} epochs, by share of randomized labels: {by_level}. "
        f"At {pct(top)}, {pct(changed[top])} of the {d['n_train']} training labels actually "
        f"changed{slower}",
        f"Final train / test accuracy over {n} seeds: true labels "
        f"{true['train_accuracy']:.3f} / {true['test_accuracy']:.3f}; {pct(top)} noise "
        f"{noisy['train_accuracy']:.3f} / {noisy['test_accuracy']:.3f} "
        f"(chance {1 / d['num_classes']:.2f}).",
        f"Final test accuracy by noise level (mean of {n}): {test_by_level}.",
        f"Rise then fall of test accuracy (mean of {n} seeds): {drops}.",
    ]
    noise = [r["noise"] for r in results["final"]]
    for metric, name in (
        ("critical_ratio", "critical-sample ratio"),
        ("l2_total", "L2 norm of the parameters"),
        ("path_norm", "path norm"),
    ):
        r, m = pearson(noise, [row[metric] for row in results["final"]])
        lines.append(
            f"{name.capitalize()}: {true[metric]:.3g} at 0% noise vs {noisy[metric]:.3g} at "
            f"{pct(top)} (means of {n}); correlation with the noise level r = {r:.2f} over "
            f"{m} runs."
        )
    lines += diverged_lines(results["final"], "were frozen (see results.json)")
    model, c = results["model"], results["critical"]
    setup = {  # what the settings table cannot say: the sizes that depend on the data
        "model": f"MLP {'-'.join(map(str, model['widths']))} {model['activation']}",
        "parameters": model["params"],
        **{"training examples": d["n_train"], "test examples (true labels)": d["n_test"]},
        **{"critical-sample inputs": c["examples"], "runs": len(results["final"])},
    }
    return Notes(summary, lines, [("Model, data and runs", [setup])])


EXPERIMENT = Experiment(
    id="random-labels",
    item="HW1-3",
    part="hw1-3",
    rank=1,
    title="Fitting random labels",
    question="Can a network fit randomly shuffled training labels, and what happens to test "
    "accuracy, the critical-sample ratio and the weight norms as the share of random labels grows?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "loss": "training (solid) and test (dashed) cross-entropy per epoch (log scale), the "
        "same MLP on true labels and on random training labels; line = geometric mean over "
        "seeds, band = min-max",
        "accuracy": "training (solid, against the labels trained on) and test (dashed, true "
        "labels) accuracy per epoch, true vs random training labels; band = min-max over seeds",
        "noise-curves": "training and test accuracy per epoch at every share of randomized "
        "labels; line = mean over seeds, band = min-max",
        "noise-fit": "left: final training and test accuracy and the best test accuracy seen "
        "during training vs label noise (dots: runs, line: mean); right: first epoch with "
        "training accuracy above the threshold (x: runs that never got there)",
        "noise-complexity": "critical-sample ratio and weight norms of the final models vs "
        "label noise (dots: runs, line: mean, geometric on log axes)",
    },
    quick_minutes=0.7,
    full_differs="scikit-learn's 8x8 digits (1347 training examples, 50 epochs) instead of "
    "MNIST (60 000 examples, 200 epochs in the full profile); same 3x256 MLP.",
)

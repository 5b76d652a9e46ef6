"""HW1-3 generalization: can a network fit random labels?

Protocol (Zhang et al. 2017; Arpit et al. 2017): randomize a share p of the training labels
(test labels stay true) and train the same MLP on each level, p = 0 (true labels) to 1;
every level's seeds train in one population, each model on its own labels. All levels
share the model seeds and training inputs; a level's corrupted examples include those of
every lower level (one seeded permutation cut at p * n).
Per run: epochs to fit the labels trained on, peak and final test accuracy, the
critical-sample ratio on fixed training inputs and the weight norms of the final model; the
trends are taken over the fine runs (``kit/outcomes.py``: a run must fit its labels). The
quick stand-in, scikit-learn's 8x8 digits, gives MNIST-like test accuracy with true labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
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
    fidelity_row,
    mean_band,
    mean_std,
    n_train_of,
    new_figure,
    no_data,
    outcomes,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.stats import finite, pearson
from dlprobe.measure.critical import critical_sample_ratio
from dlprobe.measure.norms import weight_norms
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import History, PerModel, Population, TrainConfig

NORMS = ("l2_total", "spectral_product", "path_norm")
# per-run results whose mean over the fine runs of a level the report quotes; the last
# three are correlated with the noise level
MEANS = ("train_accuracy", "test_accuracy", "train_loss", "peak_test_accuracy",
         "peak_test_epoch", "critical_ratio", "l2_total", "path_norm")  # fmt: skip
RISE = 0.02  # a fall of test accuracy from its peak larger than this counts as "rise, then fall"


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 0  # training examples used (seeded subset); 0 = the whole split
    # hidden-layer widths of the MLP; 3x128 fits every noise level of the digits in 100
    # epochs at a quarter of the homework's 3x256 cost (the full profile's)
    hidden: tuple[PosInt, ...] = (128, 128, 128)
    activation: Activation = "relu"  # hidden activation
    # shares of the training labels randomized, one population each; must include 0
    noise_levels: tuple[Fraction, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    # "shuffle": permute the chosen labels among themselves; "uniform": redraw them
    corruption: one_of(CORRUPTION_MODES, "corruption") = "shuffle"
    seeds: PosInt = 3  # training runs per noise level (all levels train as one population)
    seed: Seed = 0  # base seed: run i uses seed + i; also seeds the subset and the label noise
    # peak lr 3e-3 with cosine decay to 0, batches of 64: 100 epochs fit every level of the
    # digits (50 left 40% noise unfitted); evaluated every epoch for the early rise of test acc.
    train: TrainConfig = TrainConfig(lr=3e-3, schedule="cosine", epochs=100)
    # training accuracy (on the corrupted labels) that counts as fitted
    fit_accuracy: Annotated[float, Bound(gt=0, le=1)] = 0.99
    critical_examples: PosInt = 300  # training inputs searched for critical samples (the first)
    critical_radius: PosFloat = 0.1  # half-width of the L-inf box around an input, input units
    critical_steps: PosInt = 20  # signed-gradient steps of the search for a label flip

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs at least one layer width")
        levels = self.noise_levels
        require(len(set(levels)) == len(levels), f"noise_levels has repeated values: {levels}")
        require(0.0 in levels and max(levels) > 0, "noise_levels needs 0 and a level > 0")
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes([self.train.batch_size], n_train, "train.batch_size")


PROFILES = {
    "smoke": {"train_subset": 128, "hidden": (32, 32, 32), "noise_levels": (0.0, 0.5, 1.0),
              "seeds": 2, "train.epochs": 4, "train.batch_size": 32, "critical_examples": 16,
              "critical_steps": 3},
    "full": {"dataset": "mnist", "hidden": (256, 256, 256), "train.lr": 1e-3, "train.epochs": 200,
             "train.batch_size": 128, "critical_examples": 1000},
}  # fmt: skip


def run(cfg: Config, ctx: RunContext) -> dict:
    clean = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    widths = [clean.input_dim, *cfg.hidden, clean.num_classes]
    x_critical = clean.x_train[: cfg.critical_examples]  # (n_c, ...) the same at every level
    copies = noisy_copies(cfg, clean)
    levels = [{"noise": p, "labels_changed": (d.y_train != clean.y_train).float().mean().item()}
              for p, d in copies.items()]  # fmt: skip
    # every level in one population: model i * seeds + j is level i's run j, on its own labels
    noise = [p for p in cfg.noise_levels for _ in range(cfg.seeds)]
    seeds = seeds_from(cfg.seed, cfg.seeds)
    pop = Population(partial(MLP, widths, cfg.activation), seeds * len(copies), ctx.device)
    per_model = PerModel(label_noise=noise, label_noise_seeds=[cfg.seed] * len(noise),
                         label_noise_mode=cfg.corruption)  # fmt: skip
    hist = ctx.train("every-level", pop, clean, cfg.train, per_model=per_model)
    curves = [{"noise": noise[row["model"]], **{k: v for k, v in row.items() if k != "model"}}
              for row in hist.epoch_records()]  # fmt: skip
    probes = ctx.stage("probe", lambda _: _probe(cfg, pop, x_critical))
    finals = _final_rows(cfg, noise, hist, probes["rows"], pop, copies)
    for p in cfg.noise_levels:
        acc = [r["test_accuracy"] for r in finals if r["noise"] == p]
        ctx.log(f"  noise {p:g}: final test accuracy {np.mean(acc):.3f}")
    params = mlp_param_count(widths, cfg.activation)
    return {
        "model": {"widths": widths, "activation": cfg.activation, "params": params},
        "dataset": {**data_record(clean), "num_classes": clean.num_classes},
        "noise_levels": list(cfg.noise_levels),
        "levels": levels,
        "fit_accuracy": cfg.fit_accuracy,
        "critical": {"examples": len(x_critical), "radius": cfg.critical_radius},
        "epochs": cfg.train.epochs,
        "seeds": seeds,
        "curves": curves,
        "final": finals,
    }


def noisy_copies(cfg: Config, clean: Dataset) -> dict[float, Dataset]:
    """One label-corrupted copy of ``clean`` per noise level; only ``y_train`` differs."""
    return {p: corrupt_labels(clean, p, cfg.seed, cfg.corruption) for p in cfg.noise_levels}


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


def _final_rows(cfg: Config, noise: list[float], hist: History, probes: list[dict], pop,
                copies: dict[float, Dataset]) -> list:  # fmt: skip
    """Per model: its noise level, final metrics, epochs to fit, peak test accuracy, probes
    and outcome (fine: its final training accuracy on the labels it trained on reaches
    ``fit_accuracy``)."""
    spread = {p: outcomes.collapse_probe(pop, d.x_train, d.y_train) for p, d in copies.items()}
    rows = []
    for k, final in enumerate(hist.final_records()):
        train_acc = [a[k] for a in hist.train_accuracy]  # per evaluated epoch
        test_acc = [a[k] for a in hist.test_accuracy]
        best = int(np.argmax(test_acc))
        fitted = [e for e, a in zip(hist.epochs, train_acc, strict=True) if a >= cfg.fit_accuracy]
        row = {"noise": noise[k], **final, "epochs_to_fit": fitted[0] if fitted else None,
               "peak_test_accuracy": test_acc[best], "peak_test_epoch": hist.epochs[best],
               **probes[k], **spread[noise[k]][k]}  # fmt: skip
        fits = final["train_accuracy"] >= cfg.fit_accuracy  # False when NaN (diverged)
        rows.append({**row, "outcome": outcomes.outcome(row, fits)})
    return rows


def _curve(results: dict, noise: float, metric: str) -> tuple[list, np.ndarray]:
    """(epochs, values (n_seeds, n_epochs)) of one metric at one noise level."""
    return series([r for r in results["curves"] if r["noise"] == noise], "epoch", metric)


def _loss_curves(results: dict):
    fig, ax = new_figure()
    worst, d = max(results["noise_levels"]), results["dataset"]
    random_name = "random labels" if worst == 1.0 else f"{worst:.0%} random labels"
    for p, color, label in ((0.0, COLORS[0], "true labels"), (worst, COLORS[3], random_name)):
        for split, style in (("train", "-"), ("test", "--")):
            xs, runs = _curve(results, p, f"{split}_loss")
            mean_band(ax, xs, runs, f"{split}, {label}", color, log=True, ls=style)
    title = f"Cross-entropy loss: true vs random labels ({d['name']}, {d['n_train']} train)"
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title=title)
    if not ax.lines:
        no_data(ax, "no finite loss: every run diverged")
        return fig
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


def _noise_curves(results: dict):
    levels, cmap = results["noise_levels"], matplotlib.colormaps["plasma"]
    fig, axes = new_figure(ncols=2, sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for p in levels:
            xs, runs = _curve(results, p, f"{split}_accuracy")
            mean_band(ax, xs, runs, f"{p:.0%} noise", cmap(0.85 * p / max(levels)))
        labels = "labels trained on" if split == "train" else "true labels"
        ax.set(xlabel="epoch", title=f"{split} accuracy ({labels})")
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Accuracy per epoch at each label-noise level ({results['dataset']['name']})")
    fig.tight_layout()
    return fig


def _per_level(results: dict, panels: list[tuple[str, str, str]], title: str):
    """One panel per (metric, title, mean): every run at its noise level marked by outcome,
    and the (arithmetic or geometric) mean of the fine runs per level as a line."""
    levels, n = results["noise_levels"], len(results["seeds"])
    fig, axes = new_figure(ncols=2, nrows=len(panels) // 2, width=5.0, height=3.4)
    for ax, (metric, name, mean) in zip(axes.flat, panels, strict=True):
        outcomes.outcome_scatter(ax, results["final"], levels, "noise", metric, mean)
        ax.set_xticks(range(len(levels)), [f"{p:.0%}" for p in levels])
        ax.set(xlabel="labels randomized", title=name)
        ax.set_yscale("log" if mean == "geometric" else "linear")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} ({n} runs per level)")
    fig.tight_layout()
    return fig


FIT_PANELS = [
    ("train_accuracy", "final train accuracy (labels trained on)", "arithmetic"),
    ("test_accuracy", "final test accuracy (true labels)", "arithmetic"),
    ("peak_test_accuracy", "best test accuracy during training", "arithmetic"),
    ("epochs_to_fit", "first epoch with train accuracy >= the fit threshold", "arithmetic"),
]
COMPLEXITY_PANELS = [
    ("critical_ratio", "critical-sample ratio", "arithmetic"),
    ("l2_total", "L2 norm of all parameters", "arithmetic"),
    ("spectral_product", "product of layer spectral norms", "geometric"),
    ("path_norm", "L2 path norm", "geometric"),
]


def figures(results: dict) -> dict:
    c, fit = results["critical"], results["fit_accuracy"]
    crit = f"critical samples: r={c['radius']:g}, {c['examples']} inputs"
    complexity = f"Final models vs label noise ({crit})"
    fitted = f"Fit (threshold {fit:g}) and test accuracy vs label noise"
    return {
        "loss": _loss_curves(results),
        "noise-curves": _noise_curves(results),
        "noise-fit": _per_level(results, FIT_PANELS, fitted),
        "noise-complexity": _per_level(results, COMPLEXITY_PANELS, complexity),
    }


def notes(results: dict) -> Notes:
    levels, n, d = results["noise_levels"], len(results["seeds"]), results["dataset"]
    epochs = results["epochs"]
    top, fit, fine = max(levels), results["fit_accuracy"], outcomes.fine_rows(results["final"])
    by = {p: [r for r in fine if r["noise"] == p] for p in levels}
    mu = {p: {m: mean_std(r[m] for r in by[p])[0] for m in MEANS} for p in levels}
    k = {p: len(by[p]) for p in levels}  # fine runs per level
    summary = {
        f"{p:.0%} noise: fine runs, train / test / peak test accuracy, critical ratio, L2 norm": [
            k[p], *(m[x] for x in ("train_accuracy", "test_accuracy", "peak_test_accuracy",
                                   "critical_ratio", "l2_total"))]
        for p, m in mu.items()
    }  # fmt: skip
    seen = [p for p in levels if k[p]]  # levels with a fine run
    tests = [mu[p]["test_accuracy"] for p in seen]
    drop = {p: mu[p]["peak_test_accuracy"] - mu[p]["test_accuracy"] for p in seen}
    xs, runs = _curve(results, top, "test_loss")
    runs, n_ok = np.asarray(runs, dtype=float), np.isfinite(runs).sum(0)  # finite runs per epoch
    curve = np.where(n_ok > 0, np.nansum(runs, 0) / np.maximum(n_ok, 1), np.nan)  # (epochs,)
    climbs = bool(n_ok.any())  # False: every run at the top level diverged
    low = int(np.nanargmin(curve)) if climbs else 0
    corr = {m: pearson([r["noise"] for r in fine], [r[m] for r in fine]) for m in MEANS[-3:]}
    clean, model = mu[0.0]["test_accuracy"], results["model"]
    regime = "the homework's regime" if clean >= 0.9 else "below 0.9, unlike the homework's"
    changed = {r["noise"]: r["labels_changed"] for r in results["levels"]}
    fits = {p: finite(r["epochs_to_fit"] for r in by[p]) for p in levels}  # None: never fit
    when = {p: float(np.median(v)) if v.size else np.nan for p, v in fits.items()}
    lines = [
        f"Stand-in for MNIST: {d['name']} ({d['n_train']} train / {d['n_test']} test); with "
        f"true labels the MLP {'-'.join(map(str, model['widths']))} ({model['params']} params) "
        + (f"reaches test accuracy {clean:.3f} (mean of {k[0.0]} fine runs): {regime} (MNIST: "
           "about 0.97-0.98)." if k[0.0] else f"fits in no run within {epochs} epochs."),
        f"Fine runs (final train accuracy >= {fit:g} on their labels after {epochs} epochs, not "
        "collapsed or diverged), by share randomized: " + ", ".join(f"{p:.0%} {k[p]}/{n}" + (
            f" (median epoch {when[p]:g})" if np.isfinite(when[p]) else "") for p in levels)
        + f"; at {top:.0%}, {changed[top]:.0%} of the training labels changed.",
        "Test accuracy (mean of fine runs), peak during training -> final: " + "; ".join(
            f"{p:.0%} {mu[p]['peak_test_accuracy']:.3f} (epoch {mu[p]['peak_test_epoch']:.0f}) "
            f"-> {mu[p]['test_accuracy']:.3f}{' (rise, then fall)' if drop[p] > RISE else ''}"
            for p in seen) + "." if seen else "No level has a fine run to compare.",
        "Correlation with the noise level over the fine runs: " + ", ".join(
            f"{m} r = {corr[m][0]:.2f} (n={corr[m][1]})" for m in corr) + ". Confound: every "
        "level trains the same epochs but fits its labels at another epoch (medians above), "
        "so a level's norms and critical ratio also measure how long its loss, and the "
        "gradients, stayed large." if len(fine) >= 3 else
        f"Only {len(fine)} fine run(s): no correlation with the noise level.",
        *outcomes.excluded_lines(results["final"], lambda r: f"{r['noise']:.0%} noise, seed "
                                 f"{r['seed']}", f"train accuracy {fit:g}"),
    ]  # fmt: skip
    upto80, high = [p for p in levels if p <= 0.8], [p for p in levels if 0.6 <= p < 1]
    checks = [  # claim, measured, reproduced, why not, whether the fine runs can measure it
        ("random labels are fitted: training loss about 0", f"{mu[top]['train_loss']:.3g} at "
         f"{top:.0%} noise", mu[top]["train_loss"] < 0.05, "it stays above 0.05", k[top] > 0),
        ("with random labels the test loss climbs", f"lowest {curve[low]:.3g} at epoch {xs[low]}, "
         f"final {curve[-1]:.3g}" if climbs else "no finite test loss", climbs and curve[-1] > 1.1
         * curve[low], "it ends within 10% of its low" if climbs else "every run diverged", True),
        ("at 0-80% noise every run fits", ", ".join(f"{p:.0%} {k[p]}/{n}" for p in upto80),
         all(k[p] == n for p in upto80), f"not every run fits within {epochs} epochs", True),
        ("test accuracy falls with the noise", ", ".join(f"{a:.3f}" for a in tests),
         bool(np.all(np.diff(tests) < 0)), "a step up in noise does not lower it", seen == levels),
        ("at 60-80% noise test accuracy rises, then falls", ", ".join(
            f"{p:.0%} -{drop[p]:.3f}" for p in high if p in drop) or "no level in 60-80%",
         bool(high) and all(drop.get(p, 0) > RISE for p in high), "there is no level in 60-80%"
         if not high else f"the fall from the peak is <= {RISE:g}", all(k[p] for p in high)),
        *((f"the {name} grows with the noise", f"r = {corr[m][0]:.2f} (n={corr[m][1]})",
           corr[m][0] > 0, "it does not", corr[m][1] >= 3)
          for m, name in (("critical_ratio", "critical-sample ratio"), ("l2_total", "weight norm"))),
    ]  # fmt: skip
    tables = [("Runs per noise level", outcomes.outcome_table(results["final"], "noise"))]
    ref = "lecture / homework (MNIST, 3x256 MLP)"
    fidelity = [fidelity_row(c, ref, m, ok and can, why if can else "there are too few fine "
                             "runs to measure it") for c, m, ok, why, can in checks]  # fmt: skip
    return Notes(summary, lines, tables, fidelity)


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
        "noise-curves": "training (against the labels trained on) and test (true labels) "
        "accuracy per epoch at every share of randomized labels; line = mean over seeds, band = "
        "min-max",
        "noise-fit": "final training and test accuracy, the best test accuracy seen during "
        "training and the first epoch with training accuracy above the threshold, vs label "
        "noise; markers: runs by outcome, line: mean of the fine runs",
        "noise-complexity": "critical-sample ratio and weight norms of the final models vs "
        "label noise; markers: runs by outcome, line: mean of the fine runs (geometric on log "
        "axes)",
    },
    quick_minutes=0.7,
    full_differs="scikit-learn's 8x8 digits (1347 training examples, 100 epochs) and a 3x128 "
    "MLP instead of MNIST (60 000 examples, 200 epochs) and the homework's 3x256 MLP (the "
    "full profile).",
)

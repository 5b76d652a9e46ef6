"""HW1-1 deep vs shallow on a classification task: CNNs and MLPs of equal parameter count.

Protocol: on one dataset, build MLPs with 1, 3 and 6 hidden layers and CNNs with 1, 2 and
3 conv layers, every model solved for the same parameter budget (all counts within 2% of
each other); train each as a population of seeds with the same optimizer, epochs and
initialisation, and record the training and test loss and accuracy after every epoch
(epoch 0: before training). Each run is sorted by how it ended (``kit/outcomes.py``: it
must reach ``fit_accuracy`` on the training set) and models are compared over the fine
runs. The quick profile's digits (8x8 handwritten digits) is the embedded stand-in for
MNIST: every model fits it and reaches MNIST-like test accuracy; on mnist1d (shifted and
scaled 1-D signals) the families differ most, but MLPs do not fit it in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_batch_sizes,
    check_fits,
    data_record,
    fidelity_row,
    group_rows,
    mean_band,
    mean_std,
    n_train_of,
    new_figure,
    one_of,
    require,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.outcomes import (
    collapse_probe,
    excluded_lines,
    fine_rows,
    outcome,
    outcome_table,
)
from dlprobe.experiments.kit.trajectories import initial_metrics
from dlprobe.models import (
    INITS,
    build_model,
    count_params,
    mlp_param_count,
    mlp_widths_for_budget,
    solve_width,
)
from dlprobe.train import Population, TrainConfig

# Parameters per model when param_budget is 0, by dataset: small enough for a laptop,
# large enough that every depth of both families fits (checked by a test).
DEFAULT_BUDGETS = {"mnist1d": 5000, "digits": 3000, "mnist": 30000, "fashion-mnist": 30000,
                   "cifar10": 100000}  # fmt: skip
MAX_SPREAD = 0.02  # largest allowed (max - min) / max of the parameter counts
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    mlp_depths: tuple[PosInt, ...] = (1, 3, 6)  # hidden layers of each MLP
    cnn_depths: tuple[PosInt, ...] = (1, 2, 3)  # conv layers of each CNN (then one linear layer)
    param_budget: NonNegInt = 0  # parameters per model (matched within 2%); 0 = dataset default
    kernel_size: PosInt = 5  # CNN kernel width (1-D) or side (2-D), in input samples; odd
    activation: Activation = "relu"  # hidden activation of both families
    init: one_of(INITS, "init") = "kaiming"  # weight initialisation of both families
    train_subset: NonNegInt = 0  # training examples used; 0 = the whole training split
    seeds: PosInt = 5  # training runs per model, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i; also draws the training subset
    # a run has fitted the training set when its final training accuracy reaches this
    fit_accuracy: Annotated[float, Bound(gt=0, le=1)] = 0.95
    # the same training for every model; metrics after every epoch
    train: TrainConfig = TrainConfig(lr=3e-3, epochs=30, batch_size=64)

    def check(self) -> None:
        require(
            len(self.mlp_depths) + len(self.cnn_depths) >= 2,
            "give at least two models (mlp_depths and cnn_depths together)",
        )
        for name in ("mlp_depths", "cnn_depths"):
            depths = getattr(self, name)
            require(len(set(depths)) == len(depths), f"{name} has repeated depths: {depths}")
        require(
            self.kernel_size % 2 == 1,
            f"kernel_size must be odd (same-size padding), got {self.kernel_size}",
        )
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes([self.train.batch_size], n_train, "train.batch_size")
        check_fits(self.budget(), self.seeds)  # every model is solved for the budget

    def budget(self) -> int:
        return self.param_budget or DEFAULT_BUDGETS[self.dataset]


PROFILES = {
    "smoke": {"seeds": 2, "train.epochs": 2, "train_subset": 400},
    "full": {"dataset": "mnist", "seeds": 5, "train.epochs": 30, "train.lr": 1e-3},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    models = model_specs(cfg, list(data.input_shape), data.num_classes)
    seeds = seeds_from(cfg.seed, cfg.seeds)
    ctx.log(
        f"{cfg.dataset}: {data.n_train} train / {data.n_test} test; "
        + "; ".join(f"{m['label']} {m['params']} params" for m in models)
    )
    curves, finals = [], []
    for m in models:
        pop = Population(partial(build_model, m["spec"]), seeds, ctx.device)
        start = initial_metrics(pop, data)  # epoch 0: every curve starts at chance level
        hist = ctx.train(f"{m['family'].lower()}-{m['depth']}", pop, data, cfg.train)
        tag = {"model": m["label"], "family": m["family"]}
        before = [
            {"seed": seed, "epoch": 0, **{name: start[name][k] for name in METRICS}}
            for k, seed in enumerate(seeds)
        ]
        curves += [
            {**tag, "seed": r["seed"], "epoch": r["epoch"], **{name: r[name] for name in METRICS}}
            for r in before + hist.epoch_records()
        ]
        probes = collapse_probe(pop, data.x_train, data.y_train)
        for final, probe in zip(hist.final_records(), probes, strict=True):
            row = {**tag, "depth": m["depth"], "params": m["params"], **final, **probe}
            fitted = final["train_accuracy"] >= cfg.fit_accuracy  # False when NaN (diverged)
            finals.append({**row, "outcome": outcome(row, fitted)})
    held = {k: getattr(cfg.train, k) for k in ("optimizer", "lr", "epochs", "batch_size")}
    return {
        "dataset": {**data_record(data), "input_shape": list(data.input_shape)},
        "budget": cfg.budget(),
        "held_equal": {"init": cfg.init, **held},
        "fit_accuracy": cfg.fit_accuracy,
        "models": models,
        "curves": curves,
        "final": finals,
        "seeds": seeds,
    }


def model_specs(cfg: Config, input_shape: list[int], num_classes: int) -> list[dict]:
    """One record per model (label, family, depth, buildable spec, parameter count); a
    DlprobeError when some depth misses the budget or the counts spread over more than 2%."""
    target, models = cfg.budget(), []
    for depth in cfg.cnn_depths:
        channels = cnn_channels_for_budget(cfg, input_shape, num_classes, depth, target)
        spec = _cnn_spec(cfg, input_shape, channels, num_classes)
        label = f"CNN {depth} conv ({'-'.join(map(str, channels))} ch)"
        models.append(dict(label=label, family="CNN", depth=depth, spec=spec, params=_count(spec)))
    for depth in cfg.mlp_depths:
        widths = mlp_widths_for_budget(
            int(np.prod(input_shape)), num_classes, depth, target, cfg.activation
        )
        spec = {"kind": "mlp", "widths": widths, "activation": cfg.activation, "init": cfg.init}
        label = f"MLP {depth} hidden ({'-'.join(map(str, widths[1:-1]))})"
        params = mlp_param_count(widths, cfg.activation)
        models.append(dict(label=label, family="MLP", depth=depth, spec=spec, params=params))
    counts = [m["params"] for m in models]
    spread = (max(counts) - min(counts)) / max(counts)
    listing = ", ".join(f"{m['label']}: {m['params']}" for m in models)
    require(
        spread <= MAX_SPREAD,
        f"with a budget of {target} parameters the models have {listing} parameters, a spread "
        f"of {spread:.1%} > {MAX_SPREAD:.0%}; try another param_budget",
    )
    return models


def cnn_channels_for_budget(
    cfg: Config, input_shape: list[int], num_classes: int, depth: int, target: int
) -> list[int]:
    """Channels ``[c, ..., c, v]`` of a ``depth``-layer CNN with about ``target`` parameters.

    Like ``mlp_widths_for_budget``: a common channel count c is solved first, then the
    last layer's v is tuned for common counts c-3 ... c+3 (a count of 1-conv or 2-conv
    nets jumps by hundreds per channel), and the closest total wins.
    """

    def count(channels: list[int]) -> int:
        return _count(_cnn_spec(cfg, input_shape, channels, num_classes))

    c = solve_width(lambda w: count([w] * depth), target, max_width=4096)
    candidates = []
    for base in range(max(1, c - 3), c + 4):
        head = [base] * (depth - 1)
        v = solve_width(lambda v, head=head: count([*head, v]), target, max_width=4096)
        candidates.append([*head, v])
    return min(candidates, key=lambda chs: (abs(count(chs) - target), abs(chs[-1] - chs[0])))


def _cnn_spec(cfg: Config, input_shape, channels, num_classes) -> dict:
    return dict(kind="cnn", input_shape=list(input_shape), channels=list(channels),
                num_classes=num_classes, activation=cfg.activation,
                kernel_size=cfg.kernel_size, init=cfg.init)  # fmt: skip


def _count(spec: dict) -> int:
    """Parameters of a model spec, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return count_params(build_model(spec))


def figures(results: dict) -> dict:
    figs = {}
    fine = {(r["model"], r["seed"]) for r in fine_rows(results["final"])}
    by_model = group_rows(
        [r for r in results["curves"] if (r["model"], r["seed"]) in fine], "model"
    )
    ds = results["dataset"]["name"]
    panels = [
        ("train-loss", "train_loss", "training loss (cross-entropy)", True),
        ("train-accuracy", "train_accuracy", "training accuracy", False),
        ("test-accuracy", "test_accuracy", "test accuracy", False),
    ]
    for name, metric, ylabel, log in panels:
        fig, ax = new_figure(width=7.5, height=5.5)
        for i, m in enumerate(results["models"]):
            if (m["label"],) not in by_model:
                continue  # no fine run of this model: named in the report
            xs, runs = series(by_model[(m["label"],)], "epoch", metric)  # (n_fine, epochs)
            label, ls = f"{m['label']}, {m['params']} params", "-" if m["family"] == "CNN" else "--"
            mean_band(ax, xs, runs, label, COLORS[i], log=log, ls=ls)
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        title = f"{ylabel.capitalize()} on {ds}, fine runs (CNN solid, MLP dashed; band: min-max)"
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.title.set_fontsize(10)
        if ax.lines:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        fig.tight_layout()
        figs[name] = fig
    return figs


def notes(results: dict) -> Notes:
    models = [dict(m) for m in results["models"]]  # + fine runs, test accuracy mean and sd
    n, held, fit = len(results["seeds"]), results["held_equal"], 0
    fine, table = group_rows(fine_rows(results["final"]), "model"), []
    for m, counts in zip(models, outcome_table(results["final"], "model"), strict=True):
        s = {k: mean_std(r[k] for r in fine.get((m["label"],), [])) for k in METRICS}
        m["fine"], (m["test"], m["sd"]) = counts["fine"], s["test_accuracy"]
        fit += counts["fine"]
        table.append({**counts, **{k.replace("_", " "): f"{v[0]:.3g} ± {v[1]:.1g}" if "loss" in k
                                   else f"{v[0]:.3f} ± {v[1]:.3f}" for k, v in s.items()}})  # fmt: skip
    summary = {
        f"{m['label']}: fine runs, mean test accuracy": [m["fine"], m["test"]] for m in models
    }
    params = [m["params"] for m in models]
    spread, d = (max(params) - min(params)) / max(params), results["dataset"]
    ds = d["name"]
    lines = [
        f"Held equal: {min(params)}-{max(params)} parameters (spread {spread:.1%}), "
        f"{held['init']} initialisation, {held['optimizer']} at lr {held['lr']:g}, "
        f"{held['epochs']} epochs in batches of {held['batch_size']}, on {ds} ({d['n_train']} "
        f"train / {d['n_test']} test), {n} seeds per model. A run is fine when it reaches training accuracy {results['fit_accuracy']:g} "
        "and neither collapsed nor diverged; what each model reached: the table below."
    ]
    ranked = [m for m in models if m["fine"] >= 2]
    if unranked := [m["label"] for m in models if m["fine"] < 2]:
        lines.append(f"Fewer than 2 fine runs, not compared: {', '.join(unranked)}.")
    if len(ranked) >= 2:
        best, worst = max(ranked, key=lambda m: m["test"]), min(ranked, key=lambda m: m["test"])
        lines.append(
            f"Highest mean test accuracy of the fine runs: {best['label']} ({best['test']:.3f}); "
            f"lowest: {worst['label']} ({worst['test']:.3f})."
        )
    families = group_rows(ranked, "family")
    if len(families) == 2:
        cnn, mlp = (max(families[(f,)], key=lambda m: m["test"]) for f in ("CNN", "MLP"))
        lines.append(
            f"Best of each family: CNN {cnn['test']:.3f} ({cnn['depth']} conv) vs MLP "
            f"{mlp['test']:.3f} ({mlp['depth']} hidden): a gap of "
            f"{100 * (cnn['test'] - mlp['test']):+.1f} points for the CNN, against a spread "
            f"(sd over runs) of {100 * cnn['sd']:.1f} and {100 * mlp['sd']:.1f} points."
        )
    for (family,), ms in families.items():
        ms = sorted(ms, key=lambda m: m["depth"])
        steps = np.diff([m["test"] for m in ms])
        trend = (
            "rises" if (steps > 0).all() else "falls" if (steps < 0).all() else "is not monotonic"
        )
        by_depth = ", ".join(f"{m['depth']}: {m['test']:.3f}" for m in ms)
        if len(ms) >= 2:
            lines.append(f"{family}: mean test accuracy {trend} with depth ({by_depth}).")
    name = lambda r: f"{r['model']}, seed {r['seed']}"  # noqa: E731
    lines += excluded_lines(results["final"], name, f"train accuracy {results['fit_accuracy']:g}")
    kinds = {m["family"] for m in models}
    fidelity = [
        fidelity_row(
            "models of similar parameter count and different depth, CNN and DNN variants",
            ">= 3 models, parameter counts within 1-2%, CNNs and DNNs",
            f"{len(models)} models ({', '.join(sorted(kinds))}), spread {spread:.1%}",
            len(models) >= 3 and kinds == {"CNN", "MLP"} and spread <= MAX_SPREAD,
        ),
        fidelity_row("a real image task", "MNIST or CIFAR-10", ds, ds in ("mnist", "cifar10"),
                     f"the quick profile uses the embedded {ds}; the full profile MNIST"),
        fidelity_row("every model fits its training set", "trained to convergence",
                     f"{fit} of {len(results['final'])} runs reached train accuracy "
                     f"{results['fit_accuracy']:g} in {held['epochs']} epochs",
                     fit == len(results["final"]), "some runs did not (named above)"),
    ]  # fmt: skip
    title = (f"Runs per model (budget {results['budget']} parameters; CNNs max-pool 2 after "
             "each conv, then one linear layer): outcomes, mean ± sd of the fine runs")  # fmt: skip
    return Notes(summary, lines, [(title, table)], fidelity)


EXPERIMENT = Experiment(
    id="actual-task",
    item="HW1-1",
    part="hw1-1",
    rank=2,
    title="Deep vs shallow on a classification task",
    question="With the same number of parameters, do deeper networks, and CNNs rather than "
    "MLPs, learn a real classification task better?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "train-loss": "training loss per epoch (log scale) of every model; line = geometric "
        "mean over the fine runs, band = their min-max; CNNs solid, MLPs dashed",
        "train-accuracy": "training accuracy per epoch; line = mean over the fine runs, band = "
        "min-max",
        "test-accuracy": "test accuracy per epoch; line = mean over the fine runs, band = min-max",
    },
    quick_minutes=0.9,
    full_differs="scikit-learn's 8x8 digits (embedded; 1347 training images) with 3000-parameter "
    "models for 30 epochs instead of the homework's MNIST; the full profile trains on MNIST.",
)

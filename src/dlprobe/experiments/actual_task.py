"""HW1-1 deep vs shallow on a classification task: CNNs and MLPs of equal parameter count.

Protocol: on one dataset, build MLPs with 1, 3 and 6 hidden layers and CNNs with 1, 2 and
3 conv layers, every model solved for the same parameter budget (all counts within 2% of
each other); train each as a population of seeds with the same optimizer and record the
training and test loss and accuracy after every epoch (epoch 0: before training).
mnist1d (the default) is where the two families differ most: its signals are shifted and
scaled, which convolutions absorb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
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
    group_rows,
    mean_band,
    mean_std,
    n_train_of,
    new_figure,
    require,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.trajectories import initial_metrics
from dlprobe.models import (
    build_model,
    count_params,
    describe_model,
    mlp_param_count,
    mlp_widths_for_budget,
    solve_width,
)
from dlprobe.train import Population, TrainConfig

# Parameters per model when param_budget is 0, by dataset: small enough for a laptop,
# large enough that every depth of both families fits (checked by a test).
DEFAULT_BUDGETS = {
    "mnist1d": 5000,
    "digits": 3000,
    "mnist": 30000,
    "fashion-mnist": 30000,
    "cifar10": 100000,
}
MAX_SPREAD = 0.02  # largest allowed (max - min) / max of the parameter counts
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    mlp_depths: tuple[PosInt, ...] = (1, 3, 6)  # hidden layers of each MLP
    cnn_depths: tuple[PosInt, ...] = (1, 2, 3)  # conv layers of each CNN (then one linear layer)
    param_budget: NonNegInt = 0  # parameters per model (matched within 2%); 0 = dataset default
    kernel_size: PosInt = 5  # CNN kernel width (1-D) or side (2-D), in input samples; odd
    activation: Activation = "relu"  # hidden activation of both families
    train_subset: NonNegInt = 0  # training examples used; 0 = the whole training split
    seeds: PosInt = 3  # training runs per model, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i; also draws the training subset
    # the same training for every model; metrics after every epoch
    train: TrainConfig = TrainConfig(lr=3e-3, epochs=20, batch_size=100)

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
        pop = Population(lambda spec=m["spec"]: build_model(spec), seeds, ctx.device)
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
        finals += [
            {**tag, "depth": m["depth"], "params": m["params"], **final}
            for final in hist.final_records()
        ]
    return {
        "dataset": {
            **data_record(data),
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        },
        "budget": cfg.budget(),
        "models": models,
        "curves": curves,
        "final": finals,
        "seeds": seeds,
    }


def model_specs(cfg: Config, input_shape: list[int], num_classes: int) -> list[dict]:
    """One record per model (label, family, depth, buildable spec, parameter count); a
    DlprobeError when some depth misses the budget or the counts spread over more than 2%."""
    target = cfg.budget()
    models = []
    for depth in cfg.cnn_depths:
        channels = cnn_channels_for_budget(
            input_shape, num_classes, depth, target, cfg.activation, cfg.kernel_size
        )
        spec = _cnn_spec(input_shape, channels, num_classes, cfg.activation, cfg.kernel_size)
        label = f"CNN {depth} conv ({'-'.join(map(str, channels))} ch)"
        models.append(dict(label=label, family="CNN", depth=depth, spec=spec, params=_count(spec)))
    for depth in cfg.mlp_depths:
        widths = mlp_widths_for_budget(
            int(np.prod(input_shape)), num_classes, depth, target, cfg.activation
        )
        spec = {"kind": "mlp", "widths": widths, "activation": cfg.activation}
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
    input_shape: list[int], num_classes: int, depth: int, target: int, activation, kernel_size
) -> list[int]:
    """Channels ``[c, ..., c, v]`` of a ``depth``-layer CNN with about ``target`` parameters.

    Like ``mlp_widths_for_budget``: a common channel count c is solved first, then the
    last layer's v is tuned for common counts c-3 ... c+3 (a count of 1-conv or 2-conv
    nets jumps by hundreds per channel), and the closest total wins.
    """

    def count(channels: list[int]) -> int:
        return _count(_cnn_spec(input_shape, channels, num_classes, activation, kernel_size))

    c = solve_width(lambda w: count([w] * depth), target, max_width=4096)
    candidates = []
    for base in range(max(1, c - 3), c + 4):
        head = [base] * (depth - 1)
        v = solve_width(lambda v, head=head: count([*head, v]), target, max_width=4096)
        candidates.append([*head, v])
    return min(candidates, key=lambda chs: (abs(count(chs) - target), abs(chs[-1] - chs[0])))


def _cnn_spec(input_shape, channels, num_classes, activation, kernel_size) -> dict:
    return {
        "kind": "cnn",
        "input_shape": list(input_shape),
        "channels": list(channels),
        "num_classes": num_classes,
        "activation": activation,
        "kernel_size": kernel_size,
    }


def _count(spec: dict) -> int:
    """Parameters of a model spec, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return count_params(build_model(spec))


def figures(results: dict) -> dict:
    figs = {}
    by_model = group_rows(results["curves"], "model")
    ds = results["dataset"]["name"]
    panels = [
        ("train-loss", "train_loss", "training loss (cross-entropy)", True),
        ("train-accuracy", "train_accuracy", "training accuracy", False),
        ("test-accuracy", "test_accuracy", "test accuracy", False),
    ]
    for name, metric, ylabel, log in panels:
        fig, ax = new_figure(width=7.5, height=5.5)
        for i, m in enumerate(results["models"]):
            xs, runs = series(by_model[(m["label"],)], "epoch", metric)  # runs (n_seeds, epochs)
            mean_band(ax, xs, runs, f"{m['label']}, {m['params']} params", COLORS[i], log=log)
            ax.lines[-1].set_linestyle("-" if m["family"] == "CNN" else "--")
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(
            xlabel="epoch",
            ylabel=ylabel,
            title=f"{ylabel.capitalize()} on {ds} (CNN solid, MLP dashed; band: min-max)",
        )
        ax.title.set_fontsize(10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        fig.tight_layout()
        figs[name] = fig
    return figs


def _final_stats(results: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """model label -> metric -> (mean, std) over seeds of the final value."""
    return {
        label: {name: mean_std(r[name] for r in rows) for name in METRICS}
        for (label,), rows in group_rows(results["final"], "model").items()
    }


def notes(results: dict) -> Notes:
    models, n = results["models"], len(results["seeds"])
    stats = _final_stats(results)
    summary = {
        f"{label}: final train loss / train acc / test acc (mean of {n})": [
            s["train_loss"][0],
            s["train_accuracy"][0],
            s["test_accuracy"][0],
        ]
        for label, s in stats.items()
    }
    params = [m["params"] for m in models]
    lines = [
        f"All {len(models)} models have {min(params)}-{max(params)} parameters (spread "
        f"{100 * (max(params) - min(params)) / max(params):.1f}%), "
        f"trained on {results['dataset']['name']} with {n} seeds each."
    ]
    for m in models:
        s = stats[m["label"]]
        lines.append(
            f"{m['label']}: final training loss {s['train_loss'][0]:.3f}, training accuracy "
            f"{s['train_accuracy'][0]:.3f}, test accuracy {s['test_accuracy'][0]:.3f} "
            f"± {s['test_accuracy'][1]:.3f} (mean ± sd over {n} seeds)."
        )
    test = {m["label"]: stats[m["label"]]["test_accuracy"][0] for m in models}
    best = max(models, key=lambda m: test[m["label"]])
    lines.append(
        f"Highest mean test accuracy: {best['label']} ({test[best['label']]:.3f}); "
        f"lowest: {min(test, key=test.get)} ({min(test.values()):.3f})."
    )
    families = group_rows(models, "family")
    if len(families) == 2:
        top = {f: max(ms, key=lambda m: test[m["label"]]) for (f,), ms in families.items()}
        cnn, mlp = top["CNN"], top["MLP"]
        lines.append(
            f"Best of each family: CNN {test[cnn['label']]:.3f} ({cnn['depth']} conv) vs MLP "
            f"{test[mlp['label']]:.3f} ({mlp['depth']} hidden): a gap of "
            f"{100 * (test[cnn['label']] - test[mlp['label']]):+.1f} points for the CNN."
        )
    for (family,), ms in families.items():
        if len(ms) >= 2:
            lines.append(_depth_trend(family, sorted(ms, key=lambda m: m["depth"]), test))
    lines += diverged_lines(results["final"])
    return Notes(summary, lines, _tables(results))


def _depth_trend(family: str, models: list[dict], test: dict[str, float]) -> str:
    accs = [test[m["label"]] for m in models]
    rises = all(b > a for a, b in zip(accs, accs[1:], strict=False))
    falls = all(b < a for a, b in zip(accs, accs[1:], strict=False))
    trend = "rises" if rises else "falls" if falls else "is not monotonic"
    by_depth = ", ".join(f"{m['depth']}: {a:.3f}" for m, a in zip(models, accs, strict=True))
    return f"{family}: test accuracy {trend} with depth ({by_depth})."


def _tables(results: dict) -> list[tuple[str, list[dict]]]:
    ds = results["dataset"]
    models = [
        {"model": m["label"], "architecture": describe_model(m["spec"]), "params": m["params"]}
        for m in results["models"]
    ]
    return [
        (
            f"Models: budget {results['budget']} parameters, counts within {MAX_SPREAD:.0%}; "
            "CNNs max-pool 2 after each conv, then one linear layer",
            models,
        ),
        ("Data", [{**ds, "input_shape": "x".join(map(str, ds["input_shape"]))}]),
    ]


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
        "mean over seeds, band = min-max; CNNs solid, MLPs dashed",
        "train-accuracy": "training accuracy per epoch; line = mean over seeds, band = min-max",
        "test-accuracy": "test accuracy per epoch; line = mean over seeds, band = min-max",
    },
    quick_minutes=0.6,
    full_differs="mnist1d (embedded, 1-D signals) and 20 epochs with 3 seeds instead of the "
    "homework's MNIST; the full profile trains on MNIST with 5 seeds.",
)

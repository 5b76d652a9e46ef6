"""HW1-3 generalization: training and test performance against the number of parameters.

Protocol: one family of networks with one width knob (an MLP with ``depth`` hidden layers
of equal width w, or a CNN with ``depth`` conv layers of c, 2c, 4c, ... channels); the
knob is solved for parameter budgets spaced evenly on a log scale from ``min_params`` to
``max_params``. Every size is trained as a population of seeds with the same optimizer
and number of epochs, then evaluated on the training and test sets; runs that diverged
or collapsed to a constant output are left out of the means and named. The homework's
reference (CNNs on CIFAR-10 up to 4.5 M parameters): training accuracy rises to about
0.98, test accuracy plateaus near 0.8, test loss first falls, then rises. The quick
profile's stand-in is scikit-learn's 8x8 digits, on which MLPs reach MNIST-like test
accuracy (about 0.97), the homework's regime; on mnist1d MLPs overfit to about 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from dlprobe.config import Bound, NonNegInt, PosInt, Seed, one_of, require
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
    group_rows,
    mean_band,
    n_train_of,
    new_figure,
    seeds_from,
)
from dlprobe.experiments.kit.outcomes import (
    FINE,
    collapse_probe,
    excluded_lines,
    outcome,
    outcome_table,
)
from dlprobe.models import build_model, count_params, describe_model, solve_width
from dlprobe.train import Population, TrainConfig

FAMILIES = ("mlp", "cnn")
METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    # "mlp": equal hidden widths w; "cnn": conv channels c, 2c, 4c, ...
    family: one_of(FAMILIES, "family") = "mlp"
    depth: PosInt = 2  # hidden layers (mlp) or conv layers (cnn)
    min_params: PosInt = 300  # parameters of the smallest model (approximately)
    max_params: PosInt = 100_000  # parameters of the largest model (approximately)
    # models, with parameter budgets spaced evenly on a log scale between the two
    sizes: Annotated[int, Bound(ge=2)] = 10
    kernel_size: PosInt = 5  # CNN kernel width (1-D) or side (2-D), in input samples; odd
    activation: Activation = "relu"  # hidden activation
    train_subset: NonNegInt = 0  # training examples used (seeded subset); 0 = the whole split
    seeds: PosInt = 3  # training runs per size, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i; also seeds the subset
    # the same for every size; eval_every_epochs >= epochs: only the final models are evaluated
    # (the last epoch always is), which is all that is compared
    train: TrainConfig = TrainConfig(epochs=60, batch_size=128, eval_every_epochs=60)

    def check(self) -> None:
        require(
            self.min_params < self.max_params,
            f"need min_params < max_params, got {self.min_params} and {self.max_params}",
        )
        require(
            self.kernel_size % 2 == 1,
            f"kernel_size must be odd (same-size padding), got {self.kernel_size}",
        )
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes([self.train.batch_size], n_train, "train.batch_size")


PROFILES = {
    "smoke": {
        "min_params": 100,
        "max_params": 3000,
        "sizes": 3,
        "seeds": 2,
        "train.epochs": 2,
        "train_subset": 256,
    },
    "full": {
        "dataset": "cifar10",
        "family": "cnn",
        "depth": 3,
        "kernel_size": 3,
        "min_params": 1_000,
        "max_params": 4_500_000,
        "sizes": 12,
        "train.epochs": 40,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    specs = model_specs(cfg, data.input_shape, data.num_classes)
    seeds = seeds_from(cfg.seed, cfg.seeds)
    models, runs = [], []
    for spec in specs:
        params, label = _param_count(spec), describe_model(spec)
        models.append({"label": label, "params": params, "spec": spec})
        pop = Population(lambda spec=spec: build_model(spec), seeds, ctx.device)
        hist = ctx.train(f"params-{params}", pop, data, cfg.train)
        probes = collapse_probe(pop, data.x_train, data.y_train)
        for final, probe in zip(hist.final_records(), probes, strict=True):
            row = {"params": params, **final, **probe}
            runs.append({**row, "outcome": outcome(row)})  # no target: small models may not fit
        accuracy = np.mean(hist.final("test_accuracy"))
        ctx.log(f"  {label}: {params} params, test accuracy {accuracy:.3f}")
    return {
        "family": cfg.family,
        "depth": cfg.depth,
        "models": models,
        "dataset": data_record(data),
        "seeds": seeds,
        "epochs": cfg.train.epochs,
        "runs": runs,
    }


def _spec(cfg: Config, width: int, input_shape: tuple[int, ...], num_classes: int) -> dict:
    """The model of the family at one value of its width knob, as a build_model spec."""
    if cfg.family == "mlp":
        widths = [int(np.prod(input_shape)), *[width] * cfg.depth, num_classes]
        return {"kind": "mlp", "widths": widths, "activation": cfg.activation}
    return {
        "kind": "cnn",
        "input_shape": list(input_shape),
        "channels": [width * 2**i for i in range(cfg.depth)],
        "num_classes": num_classes,
        "activation": cfg.activation,
        "kernel_size": cfg.kernel_size,
    }


def _param_count(spec: dict) -> int:
    with torch.device("meta"):  # no memory, no initialization: only the shapes count
        return count_params(build_model(spec))


def model_specs(cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> list[dict]:
    """One spec per size: the width knob solved for log-spaced parameter budgets.

    Raises:
        DlprobeError: two budgets give the same width (too many sizes for the range).
    """
    budgets = np.geomspace(cfg.min_params, cfg.max_params, cfg.sizes)
    widths = [
        solve_width(
            lambda w: _param_count(_spec(cfg, w, input_shape, num_classes)),
            int(round(b)),
            max_width=1 << 14,
        )
        for b in budgets
    ]
    require(
        len(set(widths)) == len(widths),
        f"{cfg.sizes} sizes between {cfg.min_params} and {cfg.max_params} parameters repeat "
        f"widths {widths}; use fewer sizes or a wider range",
    )
    return [_spec(cfg, w, input_shape, num_classes) for w in widths]


def _by_size(results: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """(parameter counts, values (n_seeds, n_sizes)); runs that are not fine and None are NaN."""
    params = [m["params"] for m in results["models"]]
    by = group_rows(results["runs"], "params")
    values = [[r[metric] if r["outcome"] == FINE else np.nan for r in by[(p,)]] for p in params]
    return params, np.array(values, dtype=float).T  # None (non-finite, from JSON) -> NaN


def _versus_params(results: dict, metric: str, ylabel: str, log: bool):
    fig, ax = new_figure()
    for split, color in (("train", COLORS[0]), ("test", COLORS[1])):
        params, runs = _by_size(results, f"{split}_{metric}")
        mean_band(ax, params, runs, split, color, log=log, marker="o", markersize=4)
    ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
    ax.set(
        xlabel="number of parameters",
        ylabel=ylabel,
        title=f"{ylabel.capitalize()} vs model size: {len(results['models'])} "
        f"{results['family'].upper()}s on {results['dataset']['name']}",
    )
    ax.legend(fontsize=9, title="n = fine runs per size; band: min-max", title_fontsize=8)
    return fig


def figures(results: dict) -> dict:
    return {
        "loss": _versus_params(results, "loss", "cross-entropy loss", log=True),
        "accuracy": _versus_params(results, "accuracy", "accuracy", log=False),
    }


def _means(results: dict, metric: str) -> np.ndarray:
    """Mean over the fine runs of every size (NaN where none): (n_sizes,)."""
    values = _by_size(results, metric)[1]  # (n_seeds, n_sizes)
    count = np.isfinite(values).sum(axis=0)
    return np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), np.nan)


def notes(results: dict) -> Notes:
    means = np.array([_means(results, m) for m in METRICS])  # (4, n_sizes)
    keep = np.isfinite(means).all(axis=0)  # sizes with a fine run
    every = [m["params"] for m in results["models"]]
    params = [p for p, k in zip(every, keep, strict=True) if k]
    train_acc, test_acc, train_loss, test_loss = means[:, keep]
    name = lambda r: f"{r['params']} params, seed {r['seed']}"  # noqa: E731
    tables = [("Runs per size", outcome_table(results["runs"], "params"))]
    if len(params) < 2:
        lines = ["Fewer than two sizes have a fine run: no trend with size."]
        return Notes({}, lines + excluded_lines(results["runs"], name), tables)
    summary = {}
    for k in (0, len(params) - 1):
        for metric, mean in zip(METRICS, (train_acc, test_acc, train_loss, test_loss), strict=True):
            summary[f"{params[k]} params: {metric.replace('_', ' ')} (mean of fine runs)"] = mean[k]
    i, j = int(np.nanargmin(test_loss)), int(np.nanargmax(test_acc))
    summary["params at minimal test loss"] = params[i]
    summary["params at maximal test accuracy"] = params[j]
    n, d, falls = len(results["seeds"]), results["dataset"], int(np.sum(np.diff(train_loss) < 0))
    plateau = test_acc[test_acc >= test_acc[j] - 0.02]
    gap0, gap1 = train_acc[0] - test_acc[0], train_acc[-1] - test_acc[-1]
    regime = "the homework's regime (MNIST: about 0.97-0.98)" if test_acc[j] >= 0.9 else (
        "below 0.9: a more overfitted regime than the homework's MNIST (about 0.97-0.98)")  # fmt: skip
    lines = [
        f"{len(every)} {results['family'].upper()}s of depth {results['depth']} from "
        f"{every[0]} to {every[-1]} parameters ({every[-1] / every[0]:.0f}x), {n} seeds "
        f"each, the same {results['epochs']} epochs and optimizer, on {d['name']} "
        f"({d['n_train']} train / {d['n_test']} test examples). The best mean test accuracy "
        f"on this stand-in is {test_acc[j]:.3f}: {regime}.",
        f"Smallest model ({params[0]} params): train accuracy {train_acc[0]:.3f}, test "
        f"{test_acc[0]:.3f}; largest ({params[-1]}): train {train_acc[-1]:.3f}, test "
        f"{test_acc[-1]:.3f} (means of the fine runs).",
        f"Test loss is minimal at {params[i]} params ({test_loss[i]:.3f}; train loss there "
        f"{train_loss[i]:.3g}); at the largest model it is {test_loss[-1]:.3f} "
        f"({test_loss[-1] / test_loss[i]:.2f}x the minimum) while the train loss is "
        f"{train_loss[-1]:.3g}; train loss falls in {falls} of {len(params) - 1} steps to a "
        "larger model.",
        f"Test accuracy peaks at {test_acc[j]:.3f} ({params[j]} params); {len(plateau)} of "
        f"{len(params)} sizes are within 0.02 of the peak. The gap between train and test "
        f"accuracy {'grows' if gap1 > gap0 else 'shrinks' if gap1 < gap0 else 'stays'} from "
        f"{gap0:.3f} (smallest) to {gap1:.3f} (largest).",
        *excluded_lines(results["runs"], name),
    ]
    if not keep.all():
        lines.append(f"Sizes without a fine run, not in the trends: {sum(~keep)} of {keep.size}.")
    models = [{"model": m["label"], "parameters": m["params"]} for m in results["models"]]
    return Notes(summary, lines, [("Models", models), *tables],
                 _fidelity(params, train_acc, test_acc, test_loss, d["name"]))  # fmt: skip


def _fidelity(params, train_acc, test_acc, test_loss, dataset: str) -> list[dict]:
    """The homework's three trends against the number of parameters (means of fine runs)."""
    i, j, last = int(np.nanargmin(test_loss)), int(np.nanargmax(test_acc)), len(params) - 1
    tail = test_acc[-3:]  # the three largest models
    rises_then = 0 < i < last and test_loss[-1] > 1.1 * test_loss[i]
    where = "the smallest" if i == 0 else "the largest" if i == last else f"the {params[i]}-param"
    return [
        fidelity_row("training accuracy rises with size to about 0.98", "0.98 (CIFAR-10 CNNs)",
                     f"{train_acc[0]:.3f} -> {train_acc[-1]:.3f}",
                     train_acc[-1] >= 0.95 and train_acc[-1] > train_acc[0],
                     f"the largest model reaches {train_acc[-1]:.3f}"),
        fidelity_row("test accuracy plateaus as size grows", "near 0.8 (CIFAR-10 CNNs)",
                     f"peak {test_acc[j]:.3f} at {params[j]} params; 3 largest "
                     f"{', '.join(f'{a:.3f}' for a in tail)} on {dataset}",
                     bool(np.nanmax(tail) - np.nanmin(tail) <= 0.02 and test_acc[j] - tail[-1] <= 0.02),
                     "the three largest models are not within 0.02 of each other and the peak"),
        fidelity_row("test loss first falls, then rises", "minimum at an intermediate size",
                     f"minimum {test_loss[i]:.3f} at {params[i]} params, largest {test_loss[-1]:.3f}",
                     rises_then, f"the minimum is at {where} model"
                     + ("" if i in (0, last) else " and the largest model's is within 10% of it")),
    ]  # fmt: skip


EXPERIMENT = Experiment(
    id="params-vs-generalization",
    item="HW1-3",
    part="hw1-3",
    rank=2,
    title="Number of parameters vs generalization",
    question="As a network of one structure grows from hundreds to about a hundred thousand "
    "(or millions of) parameters, how do its training and test loss and accuracy change?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "loss": "final training and test cross-entropy (log scale) against the number of "
        "parameters (log scale); line = geometric mean over seeds, band = min-max",
        "accuracy": "final training and test accuracy against the number of parameters (log "
        "scale); line = mean over seeds, band = min-max",
    },
    quick_minutes=0.4,
    full_differs="MLPs with 2 hidden layers on scikit-learn's 8x8 digits, 300 to 100 000 "
    "parameters, instead of the homework's CNNs on CIFAR-10 up to 4.5 M parameters (the "
    "full profile).",
)

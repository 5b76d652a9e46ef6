"""HW1-3 generalization: training and test performance against the number of parameters.

Protocol: one family of networks with one width knob (an MLP with ``depth`` hidden layers
of equal width w, or a CNN with ``depth`` conv layers of c, 2c, 4c, ... channels); the
knob is solved for parameter budgets spaced evenly on a log scale from ``min_params`` to
``max_params``. Every size is trained as a population of seeds with the same optimizer
and number of epochs, then evaluated on the training and test sets. The homework's
reference (CNNs on CIFAR-10 up to 4.5 M parameters): training accuracy rises to about
0.98, test accuracy plateaus near 0.8, test loss first falls, then rises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import (
    check_common,
    diverged_lines,
    group_rows,
    mean_std,
    model_seeds,
    require,
)
from dlprobe.experiments.plotting import COLORS, mean_band, new_figure
from dlprobe.models import build_model, count_params, describe_model, solve_width
from dlprobe.train import Population, TrainConfig

FAMILIES = ("mlp", "cnn")


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    family: str = "mlp"  # "mlp": equal hidden widths w; "cnn": conv channels c, 2c, 4c, ...
    depth: int = 2  # hidden layers (mlp) or conv layers (cnn)
    min_params: int = 300  # parameters of the smallest model (approximately)
    max_params: int = 100_000  # parameters of the largest model (approximately)
    sizes: int = 10  # models, budgets spaced evenly on a log scale between the two
    kernel_size: int = 5  # CNN kernel width (1-D) or side (2-D), in input samples
    activation: str = "relu"  # hidden activation
    train_subset: int = 0  # training examples used; 0 = the whole training split
    seeds: int = 3  # training runs per size, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer
    lr: float = 1e-3  # learning rate
    epochs: int = 60  # passes over the training set, the same for every size
    batch_size: int = 128  # examples per step; 0 = full batch

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(self.family in FAMILIES, f"unknown family {self.family!r}; valid: mlp, cnn")
        require(self.depth >= 1, f"depth must be >= 1, got {self.depth}")
        require(self.sizes >= 2, f"sizes must be >= 2, got {self.sizes}")
        require(
            0 < self.min_params < self.max_params,
            f"need 0 < min_params < max_params, got {self.min_params} and {self.max_params}",
        )
        require(
            self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"kernel_size must be odd and >= 1 (same-size padding), got {self.kernel_size}",
        )
        require(self.train_subset >= 0, f"train_subset must be >= 0, got {self.train_subset}")
        require(
            self.train_subset == 0 or self.batch_size <= self.train_subset,
            f"batch_size must be <= train_subset ({self.train_subset}), got {self.batch_size}",
        )


PROFILES = {
    "smoke": Config(min_params=100, max_params=3000, sizes=3, seeds=2, epochs=2, train_subset=256),
    "quick": Config(),
    "full": Config(
        dataset="cifar10",
        family="cnn",
        depth=3,
        kernel_size=3,
        min_params=1_000,
        max_params=4_500_000,
        sizes=12,
        epochs=40,
    ),
}


def _spec(cfg: Config, width: int, input_shape: tuple[int, ...], num_classes: int) -> dict:
    act = cfg.activation
    if cfg.family == "mlp":
        n_in = int(np.prod(input_shape))
        return {
            "kind": "mlp",
            "widths": [n_in, *[width] * cfg.depth, num_classes],
            "activation": act,
        }
    return {
        "kind": "cnn",
        "input_shape": list(input_shape),
        "channels": [width * 2**i for i in range(cfg.depth)],
        "num_classes": num_classes,
        "activation": act,
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


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_dataset(cfg.dataset, device=run_dir.device)
    if cfg.train_subset:
        data = data.subset_train(cfg.train_subset, seed=cfg.seed)
    specs = model_specs(cfg, data.input_shape, data.num_classes)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.epochs,  # only the final models are compared
    )
    models, runs = [], []
    for spec in specs:
        params = _param_count(spec)
        label = describe_model(spec)
        models.append({"label": label, "params": params, "spec": spec})
        pop = Population(lambda spec=spec: build_model(spec), seeds, run_dir.device)
        hist = run_dir.train(f"params-{params}", pop, data, train_cfg)
        runs += [{"params": params, **final} for final in hist.final_records()]
        run_dir.log(
            f"  {label}: {params} params, test accuracy {np.mean(hist.final('test_accuracy')):.3f}"
        )
    return {
        "family": cfg.family,
        "depth": cfg.depth,
        "models": models,
        "data": {"dataset": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "seeds": seeds,
        "epochs": cfg.epochs,
        "runs": runs,
    }


def _by_size(results: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """(parameter counts, values (n_seeds, n_sizes)); diverged runs are NaN."""
    params = [m["params"] for m in results["models"]]
    by = group_rows(results["runs"], "params")
    values = np.array(
        [[np.nan if r["diverged"] else r[metric] for r in by[(p,)]] for p in params],
        dtype=float,
    )
    return params, values.T


def _versus_params(results: dict, metric: str, ylabel: str, log: bool):
    fig, ax = new_figure()
    for split, color in (("train", COLORS[0]), ("test", COLORS[1])):
        params, runs = _by_size(results, f"{split}_{metric}")
        mean_band(ax, params, runs, split, color, log=log)
        ax.lines[-1].set_marker("o")
        ax.lines[-1].set_markersize(4)
    ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
    d = results["data"]
    ax.set(
        xlabel="number of parameters",
        ylabel=ylabel,
        title=f"{ylabel.capitalize()} vs model size: {len(results['models'])} "
        f"{results['family'].upper()}s on {d['dataset']}",
    )
    ax.legend(fontsize=9, title="n = seeds per size", title_fontsize=8)
    return fig


def figures(results: dict) -> dict:
    return {
        "loss": _versus_params(results, "loss", "cross-entropy loss", log=True),
        "accuracy": _versus_params(results, "accuracy", "accuracy", log=False),
    }


def _means(results: dict, metric: str) -> tuple[list[int], np.ndarray]:
    params, runs = _by_size(results, metric)
    return params, np.nanmean(runs, axis=0)


def summarize(results: dict) -> dict:
    out = {}
    for m in (results["models"][0], results["models"][-1]):
        rows = [r for r in results["runs"] if r["params"] == m["params"]]
        for metric in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
            out[f"{m['params']} params: {metric.replace('_', ' ')} (mean)"] = mean_std(
                r[metric] for r in rows
            )[0]
    params, test_loss = _means(results, "test_loss")
    out["params at minimal test loss"] = params[int(np.nanargmin(test_loss))]
    params, test_acc = _means(results, "test_accuracy")
    out["params at maximal test accuracy"] = params[int(np.nanargmax(test_acc))]
    return out


def observations(results: dict) -> list[str]:
    n = len(results["seeds"])
    params, train_acc = _means(results, "train_accuracy")
    _, test_acc = _means(results, "test_accuracy")
    _, train_loss = _means(results, "train_loss")
    _, test_loss = _means(results, "test_loss")
    lines = [
        f"{len(params)} {results['family'].upper()}s of depth {results['depth']} from "
        f"{params[0]} to {params[-1]} parameters ({params[-1] / params[0]:.0f}x), {n} seeds "
        f"each, {results['epochs']} epochs on {results['data']['dataset']}.",
        f"Smallest model ({params[0]} params): train accuracy {train_acc[0]:.3f}, test "
        f"{test_acc[0]:.3f}; largest ({params[-1]}): train {train_acc[-1]:.3f}, test "
        f"{test_acc[-1]:.3f} (means of {n}).",
    ]
    i = int(np.nanargmin(test_loss))
    j = int(np.nanargmax(test_acc))
    falls = int(np.sum(np.diff(train_loss) < 0))
    lines.append(
        f"Test loss is minimal at {params[i]} params ({test_loss[i]:.3f}; train loss there "
        f"{train_loss[i]:.3g}); at the largest model it is {test_loss[-1]:.3f} "
        f"({test_loss[-1] / test_loss[i]:.2f}x the minimum) while the train loss is "
        f"{train_loss[-1]:.3g} ({train_loss[i] / max(train_loss[-1], 1e-300):.0f}x lower than "
        f"at the test-loss minimum); train loss falls in {falls} of {len(params) - 1} steps "
        "to a larger model."
    )
    plateau = test_acc[test_acc >= test_acc[j] - 0.02]
    lines.append(
        f"Test accuracy peaks at {test_acc[j]:.3f} ({params[j]} params); {len(plateau)} of "
        f"{len(params)} sizes are within 0.02 of the peak. The gap between train and test "
        f"accuracy grows from {train_acc[0] - test_acc[0]:.3f} (smallest) to "
        f"{train_acc[-1] - test_acc[-1]:.3f} (largest)."
    )
    return lines + diverged_lines(results["runs"], "are left out of the means")


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    d = results["data"]
    return [
        (
            "models",
            "; ".join(
                f"{describe_model(m['spec'])} ({m['params']} params)" for m in results["models"]
            ),
        ),
        (
            "family",
            f"{cfg.family.upper()}, depth {cfg.depth}, "
            + (
                "equal hidden widths"
                if cfg.family == "mlp"
                else f"channels c, 2c, ..., kernel {cfg.kernel_size}"
            )
            + f"; widths solved for {cfg.sizes} log-spaced budgets "
            f"{cfg.min_params}-{cfg.max_params}",
        ),
        (
            "data",
            f"{d['dataset']}: {d['n_train']} training"
            + (f" (seeded subset, seed {cfg.seed})" if cfg.train_subset else "")
            + f", {d['n_test']} test examples",
        ),
        (
            "optimizer",
            f"{cfg.optimizer}, lr {cfg.lr:g}, "
            f"batch {'full' if cfg.batch_size == 0 else cfg.batch_size}",
        ),
        ("epochs", f"{cfg.epochs} for every size"),
        (
            "seeds",
            f"{cfg.seeds} per size (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}), "
            f"n = {cfg.seeds * len(results['models'])} runs",
        ),
    ]


EXPERIMENT = Experiment(
    id="params-vs-generalization",
    homework="HW1-3",
    title="Number of parameters vs generalization",
    question="As a network of one structure grows from hundreds to about a hundred thousand "
    "(or millions of) parameters, how do its training and test loss and accuracy change?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "loss": "final training and test cross-entropy (log scale) against the number of "
        "parameters (log scale); line = geometric mean over seeds, band = min-max",
        "accuracy": "final training and test accuracy against the number of parameters (log "
        "scale); line = mean over seeds, band = min-max",
    },
    quick_minutes=0.5,
    full_differs="MLPs with 2 hidden layers on mnist1d, 300 to 100 000 parameters, instead of "
    "the homework's CNNs on CIFAR-10 up to 4.5 M parameters (the full profile).",
)

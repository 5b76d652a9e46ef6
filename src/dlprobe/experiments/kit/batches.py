"""Comparisons of batch sizes: one population per batch size, each trained for the same
budget, then probed; results read back by batch size (per-seed arrays, means, trends).

The budget is a number of optimizer steps, rounded to whole epochs at each batch size:
with equal epochs a batch of 8 gets 125 times more updates than the full batch of 1000
examples, and the comparison would measure training length. ``train_config_for`` is the
one place where a ``Budget`` becomes a batch size's training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from dlprobe.config import PosInt, require
from dlprobe.data import Dataset
from dlprobe.measure.interpolate import classification_metrics
from dlprobe.models import describe_model, mlp_param_count
from dlprobe.train import Population, TrainConfig

from .context import RunContext
from .plotting import COLORS, batch_axis, mean_band
from .stats import column, group_rows, mean_std, spearman
from .sweep import check_batch_sizes, data_record, epochs_for_steps, mlp_spec, n_train_of


@dataclass(frozen=True)
class Budget:
    """How long every model of a comparison trains, whatever its batch size."""

    steps: PosInt = 2000  # optimizer steps per model (rounded to whole epochs), same for all


def train_config_for(train: TrainConfig, batch_size: int, n_train: int, budget: Budget):
    """``train`` at ``batch_size`` (0 = full batch) for the ``budget``, evaluated at the end."""
    epochs = epochs_for_steps(budget.steps, batch_size, n_train)
    return replace(train, batch_size=batch_size, epochs=epochs, eval_every_epochs=epochs)


def check_budget_unset(train: TrainConfig, *owned: str) -> None:
    """Refuse settings of ``train`` that the budget (and ``owned``) set for every model."""
    for name in ("epochs", "eval_every_epochs", *owned):
        require(
            getattr(train, name) == getattr(TrainConfig, name),
            f"train.{name} is set for every model by the budget and the batch sizes; "
            f"leave it out (change budget.steps or the batch sizes instead)",
        )


def check_sweep(
    batch_sizes: Sequence[int], dataset: str, train_subset: int, train: TrainConfig
) -> None:
    """Before anything runs: two or more distinct batch sizes that fit the training set,
    and no batch size or length in ``train`` (the sweep and its budget set them)."""
    require(len(batch_sizes) >= 2, "give at least two batch sizes")
    require(len(set(batch_sizes)) == len(batch_sizes), "batch sizes must differ")
    check_batch_sizes(batch_sizes, n_train_of(dataset, train_subset))
    check_budget_unset(train, "batch_size")


def batch_order(batch_sizes: Sequence[int], n_train: int) -> list[int]:
    """The batch sizes, smallest first; 0 (the full batch) counts as ``n_train``."""
    return sorted(batch_sizes, key=lambda b: b or n_train)


def train_sweep(
    ctx: RunContext,
    data: Dataset,
    population: Callable[[], Population],
    train: TrainConfig,
    batch_sizes: Sequence[int],
    budget: Budget,
    probe: Callable[[nn.Module], dict],
) -> Iterator[tuple[str, Population, list[dict]]]:
    """Train a fresh ``population()`` per batch size, smallest first, as stage ``bs{size}``,
    and ``probe`` each of its models (stage ``probe-bs{size}``).

    Every batch size starts from the same initializations (the population's seeds).
    Yields (stage key, trained population, one record per model: batch size, training
    length, final metrics and the probe's numbers).
    """
    for b in batch_order(batch_sizes, data.n_train):
        batch = b or data.n_train
        cfg = train_config_for(train, b, data.n_train, budget)
        key = f"bs{batch}"
        pop = population()
        hist = ctx.train(key, pop, data, cfg)
        probes = ctx.stage(
            f"probe-{key}",
            lambda _ckpt, pop=pop: {"probes": [probe(pop.model(k)) for k in range(pop.size)]},
        )["probes"]
        ctx.log(f"  {key}: {pop.size} models probed")
        length = {"epochs": cfg.epochs, "steps": cfg.epochs * cfg.steps_per_epoch(data.n_train)}
        records = [
            {"batch_size": batch, "full_batch": b == 0, "stage": key, **length, **final, **p}
            for final, p in zip(hist.final_records(), probes, strict=True)
        ]
        yield key, pop, records


def split_metrics(model: nn.Module, data: Dataset) -> dict:
    """``{train_loss, train_accuracy, test_loss, test_accuracy}`` of a classifier as it is."""
    train = classification_metrics(model, data.x_train, data.y_train)
    test = classification_metrics(model, data.x_test, data.y_test)
    return {
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
    }


# -- results: rows with ``batch_size``, ``seed`` and metrics -------------------------------


def batch_sizes_of(runs: Sequence[dict]) -> list[int]:
    """The batch sizes of the runs, ascending (the full batch as its size)."""
    return sorted({r["batch_size"] for r in runs})


def by_batch(runs: Sequence[dict], metric: str) -> tuple[list[int], np.ndarray]:
    """Batch sizes (ascending) and ``metric`` as an array (n_seeds, n_batch_sizes)."""
    groups = group_rows(runs, "batch_size")
    sizes = sorted(b for (b,) in groups)
    return sizes, np.stack([column(groups[(b,)], metric) for b in sizes], axis=1)


def at_batch(runs: Sequence[dict], metric: str, batch: int) -> tuple[float, float]:
    """Mean and standard deviation of ``metric`` over the seeds of one batch size."""
    return mean_std(r[metric] for r in runs if r["batch_size"] == batch)


def batch_trend(runs: Sequence[dict], metric: str) -> tuple[float, int]:
    """Spearman correlation of ``metric`` with log batch size over all runs, and n."""
    return spearman([math.log(r["batch_size"]) for r in runs], [r[metric] for r in runs])


def batch_summary(runs: Sequence[dict], means: Sequence[str], trends: Sequence[str]) -> dict:
    """Headline numbers: the batch sizes, the mean of each of ``means`` at the smallest and
    the largest batch size, and the trend of each of ``trends`` with log batch size."""
    sizes = batch_sizes_of(runs)
    lo, hi = sizes[0], sizes[-1]
    out: dict = {"batch sizes": sizes}
    for metric in means:
        out[f"{metric}: mean at batch {lo} / {hi}"] = [
            at_batch(runs, metric, lo)[0],
            at_batch(runs, metric, hi)[0],
        ]
    for metric in trends:
        out[f"{metric}: Spearman r with log batch size"] = batch_trend(runs, metric)[0]
    return out


def batch_panel(
    ax, runs: Sequence[dict], n_train: int, metrics: dict, log: bool = False, first_color: int = 0
) -> None:
    """Each of ``metrics`` (result field -> legend label) against batch size on ``ax``:
    the mean over seeds as a line (geometric with ``log``) and the min-max as a band."""
    for i, (metric, label) in enumerate(metrics.items()):
        sizes, values = by_batch(runs, metric)  # (n_seeds, n_sizes)
        mean_band(ax, sizes, values, label, COLORS[first_color + i], log=log)
    if log:
        ax.set_yscale("log")
    batch_axis(ax, sizes, n_train)


# -- model, data and training length for the report ----------------------------------------


def model_and_data(data: Dataset, hidden: Sequence[int], activation: str) -> dict:
    """Results entries ``model`` (an MLP spec), ``model_params`` and ``dataset``."""
    spec = mlp_spec(data, hidden, activation)
    return {
        "model": spec,
        "model_params": mlp_param_count(spec["widths"], activation),
        "dataset": data_record(data),
    }


def model_and_data_table(results: dict) -> tuple[str, list[dict]]:
    """The Notes table of the model and the data, from ``model_and_data`` entries."""
    d = results["dataset"]
    return (
        "Model and data",
        [
            {
                "model": describe_model(results["model"]),
                "parameters": results["model_params"],
                "dataset": d["name"],
                "training examples": d["n_train"],
                "test examples": d["n_test"],
            }
        ],
    )


def length_table(rows: Sequence[dict], by: str = "batch_size") -> tuple[str, list[dict]]:
    """The Notes table of the training length (epochs, optimizer steps) per ``by``."""
    return (
        "Training length",
        [
            {
                by.replace("_", " "): key,
                "epochs": rs[0]["epochs"],
                "optimizer steps": rs[0]["steps"],
            }
            for (key,), rs in group_rows(rows, by).items()
        ],
    )

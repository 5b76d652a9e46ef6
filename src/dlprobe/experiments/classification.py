"""Pieces shared by the classification experiments that compare training settings
(sensitivity, sharpness, flatness-interpolation): data, step budgets, checks, MLP specs."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import spearmanr

from dlprobe.data import DATASETS, Dataset, load_dataset
from dlprobe.experiments.common import group_rows, mean_std, require
from dlprobe.models import describe_model


def epochs_for_steps(steps: int, batch_size: int, n_train: int) -> int:
    """Whole epochs closest to ``steps`` optimizer steps at ``batch_size`` (0 = full batch)."""
    per_epoch = math.ceil(n_train / (batch_size or n_train))
    return max(1, round(steps / per_epoch))


def load_classification(name: str, train_subset: int, seed: int, device) -> Dataset:
    """A classification dataset, its training split cut to a seeded subset if asked (0: all)."""
    data = load_dataset(name, device=device)
    if train_subset:
        require(
            train_subset <= data.n_train,
            f"train_subset must be <= {data.n_train} ({name}'s training set), got {train_subset}",
        )
        data = data.subset_train(train_subset, seed=seed)
    return data


def check_dataset(cfg) -> None:
    require(
        cfg.dataset in DATASETS,
        f"unknown dataset {cfg.dataset!r}; valid names: {', '.join(DATASETS)}",
    )
    require(cfg.train_subset >= 0, f"train_subset must be >= 0, got {cfg.train_subset}")
    require(
        all(h > 0 for h in cfg.hidden) and len(cfg.hidden) >= 1,
        f"hidden must be >= 1 positive widths, got {cfg.hidden}",
    )


def check_batch_sizes(batch_sizes, n_train: int) -> None:
    """Before training: every batch size fits the training set (0 = full batch)."""
    for b in batch_sizes:
        require(
            0 <= b <= n_train,
            f"batch sizes must be in [1, {n_train}] (the training set) or 0 for full batch, "
            f"got {b}",
        )


def probe_examples(data: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training examples drawn by a seeded permutation (all if ``n`` is 0 or larger)."""
    n = data.n_train if n <= 0 else min(n, data.n_train)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.n_train, generator=g)[:n].to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def mlp_spec(data: Dataset, hidden, activation: str) -> dict:
    """The MLP for ``data`` as a ``dlprobe.models.build_model`` spec."""
    return {
        "kind": "mlp",
        "widths": [data.input_dim, *hidden, data.num_classes],
        "activation": activation,
    }


def data_setting(cfg, data: dict) -> str:
    """The report's line on the data: name, training subset, test size."""
    subset = " (a seeded subset)" if cfg.train_subset else ""
    return f"{data['name']}: {data['n_train']} training examples{subset}, {data['n_test']} test"


def classifier_settings(cfg, results: dict) -> list[tuple[str, str]]:
    """Report rows for an MLP classifier trained by ``cfg``'s optimizer fields and seeds."""
    m, d = results["model"], results["dataset"]
    return [
        (
            "model",
            f"MLP {'-'.join(map(str, m['widths']))} {m['activation']} ({m['params']} params)",
        ),
        ("data", f"{d['name']}: {d['n_train']} train / {d['n_test']} test"),
        (
            "optimizer",
            f"{cfg.optimizer}, lr {cfg.lr:g}, batch {cfg.batch_size or 'full'}, "
            f"{cfg.epochs} epochs",
        ),
        ("seeds", f"{cfg.seeds} model(s) (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1})"),
    ]


# -- results of runs over batch sizes: rows with ``batch_size``, ``seed`` and metrics ------


def by_batch(results: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """Batch sizes (ascending) and an array (n_seeds, n_batch_sizes) of ``metric``."""
    groups = group_rows(results["runs"], "batch_size")
    sizes = sorted(b for (b,) in groups)
    runs = np.array(
        [[groups[(b,)][k][metric] for b in sizes] for k in range(len(results["seeds"]))],
        dtype=float,
    )
    return sizes, runs


def batch_trend(results: dict, metric: str) -> tuple[float, int]:
    """Spearman correlation of ``metric`` with log batch size over all runs, and n."""
    rows = [r for r in results["runs"] if r[metric] is not None and math.isfinite(r[metric])]
    rho = spearmanr([math.log(r["batch_size"]) for r in rows], [r[metric] for r in rows])[0]
    return float(rho), len(rows)


def at_batch(results: dict, metric: str, batch: int) -> tuple[float, float]:
    """Mean and standard deviation of ``metric`` over the seeds of one batch size."""
    return mean_std(r[metric] for r in results["runs"] if r["batch_size"] == batch)


def batch_sweep_settings(cfg, results: dict) -> list[tuple[str, str]]:
    """Report rows shared by the batch-size sweeps: model, data, batches, training, seeds."""
    steps = group_rows(results["runs"], "batch_size")
    return [
        ("model", f"{describe_model(results['model'])} ({results['model_params']} params)"),
        ("data", data_setting(cfg, results["data"])),
        ("batch sizes", ", ".join(str(b) for (b,) in steps)),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}, constant"),
        (
            "training length",
            f"about {cfg.steps} optimizer steps for every batch size (whole epochs): "
            + ", ".join(
                f"{b}: {rs[0]['steps']} steps = {rs[0]['epochs']} epochs"
                for (b,), rs in steps.items()
            ),
        ),
        (
            "seeds",
            f"{len(results['seeds'])} per batch size ({cfg.seed}..{cfg.seed + cfg.seeds - 1})",
        ),
    ]

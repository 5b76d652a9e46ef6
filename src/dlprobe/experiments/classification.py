"""Pieces shared by the classification experiments that compare training settings
(sensitivity, sharpness, flatness-interpolation): data, step budgets, checks, MLP specs."""

from __future__ import annotations

import math

import torch

from dlprobe.data import DATASETS, Dataset, load_dataset
from dlprobe.experiments.common import require


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

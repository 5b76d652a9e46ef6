"""Pieces of a protocol that many experiments share: models for a dataset, populations,
probe subsets, step budgets, and the checks that depend on a dataset's size."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from dlprobe import DlprobeError
from dlprobe.config import require
from dlprobe.data import Dataset
from dlprobe.models import MLP, describe_model, mlp_param_count
from dlprobe.train import Population

from .stats import seeds_from

# (training size, test size, input dimension, classes) of every dataset, so configs can be
# checked before anything loads.
DATASET_SIZES = {
    "mnist1d": (4000, 1000, 40, 10),
    "digits": (1347, 450, 64, 10),
    "mnist": (60000, 10000, 784, 10),
    "fashion-mnist": (60000, 10000, 784, 10),
    "cifar10": (50000, 10000, 3072, 10),
}


def n_train_of(dataset: str, train_subset: int = 0) -> int:
    """Training examples an experiment will use: the subset, checked against the split."""
    n = DATASET_SIZES[dataset][0]
    require(
        train_subset <= n,
        f"train_subset must be <= {n} ({dataset}'s training set), got {train_subset}",
    )
    return train_subset or n


def check_fits(params_per_model: int, models: int) -> None:
    """Refuse, before anything is allocated, models too large for this machine's memory."""
    need = params_per_model * models * 4 * 4  # float32 weights, gradients, 2 Adam moments
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    require(
        need <= total // 2,
        f"{models} model(s) of {params_per_model:,} parameters need about {need / 2**30:,.1f} "
        f"GiB for weights, gradients and optimizer state; this machine has "
        f"{total / 2**30:.0f} GiB (dlprobe uses at most half)",
    )


def check_mlp_fits(widths: Sequence[int], activation: str, models: int) -> None:
    """``check_fits`` for ``models`` MLPs of these layer widths."""
    check_fits(mlp_param_count(list(widths), activation), models)


def check_classifier_fits(dataset: str, hidden: Sequence[int], activation: str, models: int):
    """``check_fits`` for MLP classifiers of ``dataset`` with these hidden widths."""
    _, _, inputs, classes = DATASET_SIZES[dataset]
    check_mlp_fits([inputs, *hidden, classes], activation, models)


def check_batch_sizes(batch_sizes: Sequence[int], n_train: int, name: str = "batch sizes") -> None:
    """Every batch size fits the training set (0 = full batch)."""
    for b in batch_sizes:
        require(
            0 <= b <= n_train,
            f"{name} must be in [1, {n_train}] (the training set) or 0 for full batch, got {b}",
        )


def parse_widths(text: str) -> list[int]:
    """``"1-190-1"`` -> ``[1, 190, 1]``."""
    try:
        widths = [int(w) for w in text.split("-")]
    except ValueError:
        raise DlprobeError(f"model widths must look like 1-190-1, got {text!r}") from None
    require(len(widths) >= 3 and min(widths) > 0, f"a model needs >= 1 hidden layer: {text!r}")
    return widths


def mlp_spec(data: Dataset, hidden: Sequence[int], activation: str) -> dict:
    """The MLP for ``data`` as a ``dlprobe.models.build_model`` spec."""
    return {
        "kind": "mlp",
        "widths": [data.input_dim, *hidden, data.output_dim],
        "activation": activation,
    }


def mlp_population(widths: Sequence[int], activation: str, seed: int, n: int, device) -> Population:
    """``n`` MLPs of ``widths`` with seeds seed..seed+n-1, trained as one population."""
    widths = list(widths)
    return Population(lambda: MLP(widths, activation), seeds_from(seed, n), device)


def probe_examples(data: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training examples drawn by a seeded permutation (all if ``n`` is 0 or larger)."""
    n = data.n_train if n <= 0 else min(n, data.n_train)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.n_train, generator=g)[:n].to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def epochs_for_steps(steps: int, batch_size: int, n_train: int) -> int:
    """Whole epochs closest to ``steps`` optimizer steps at ``batch_size`` (0 = full batch)."""
    per_epoch = math.ceil(n_train / (batch_size or n_train))
    return max(1, round(steps / per_epoch))


def data_record(data: Dataset) -> dict:
    """The dataset as results record it: name and split sizes."""
    return {"name": data.name, "n_train": data.n_train, "n_test": data.n_test}


def model_data_table(model: dict, dataset: dict) -> tuple[str, list[dict]]:
    """The report's table of the model (a spec with "params") and the data it trained on."""
    row = {
        "model": describe_model(model),
        "parameters": model["params"],
        "dataset": dataset["name"],
        "training examples": dataset["n_train"],
        "test examples": dataset["n_test"],
    }
    return "Model and data", [row]

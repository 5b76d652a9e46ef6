"""Label corruption for the random-labels experiments: training split only, seeded."""

from __future__ import annotations

from dataclasses import replace

import torch

from dlprobe import DlprobeError
from dlprobe.data.dataset import Dataset

CORRUPTION_MODES = ("uniform", "shuffle")


def corrupt_labels(data: Dataset, fraction: float, seed: int, mode: str = "uniform") -> Dataset:
    """Replace a fraction of the training labels; the test split keeps its true labels.

    Args:
        data: a classification dataset.
        fraction: share of training examples whose label is replaced, in [0, 1].
        seed: seeds the choice of examples and of their new labels.
        mode: ``"uniform"`` draws each new label uniformly from all classes (Zhang et al.
            2017: it may coincide with the true one); ``"shuffle"`` permutes the chosen
            labels among themselves, keeping the class frequencies.

    Returns:
        A new dataset; ``meta["corrupted_indices"]`` lists the chosen training examples.
    """
    if data.task != "classification":
        raise DlprobeError(f"label corruption needs a classification dataset, {data.name} is not")
    if not 0.0 <= fraction <= 1.0:
        raise DlprobeError(f"label-noise fraction must be in [0, 1], got {fraction}")
    if mode not in CORRUPTION_MODES:
        raise DlprobeError(
            f"unknown corruption mode {mode!r}; valid: {', '.join(CORRUPTION_MODES)}"
        )
    g = torch.Generator().manual_seed(seed)
    n = data.n_train
    chosen = torch.randperm(n, generator=g)[: round(fraction * n)]
    y = data.y_train.cpu().clone()
    if mode == "uniform":
        y[chosen] = torch.randint(0, data.num_classes, (len(chosen),), generator=g)
    else:
        y[chosen] = y[chosen][torch.randperm(len(chosen), generator=g)]
    meta = {
        **data.meta,
        "label_noise": {"fraction": fraction, "mode": mode, "seed": seed},
        "corrupted_indices": sorted(chosen.tolist()),
    }
    return replace(data, y_train=y.to(data.y_train.device), meta=meta)

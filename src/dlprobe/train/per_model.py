"""Settings that differ between the models of a population, and each model's training set.

A learning-rate sweep, a weight-decay sweep, a label-noise sweep or a data-subset study is
one population: ``PerModel`` holds one value per model, the trainer applies them inside
the one batched step (hyperparameters as (K,) tensors, see ``PerModelOptimizer``; labels
as (K, n), subsets as (K, m) indices), and model k ends as it would after training alone
with its own settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dlprobe import DlprobeError
from dlprobe.data.corruption import CORRUPTION_MODES, corrupt_labels
from dlprobe.data.dataset import Dataset


@dataclass(frozen=True, eq=False)
class PerModel:
    """One value per model for settings that ``TrainConfig`` holds once (None: the config's).

    Model k trains as it would alone with ``TrainConfig`` changed to its own ``lr[k]``,
    ``weight_decay[k]`` and ``momentum[k]``, on ``corrupt_labels(data, label_noise[k],
    label_noise_seeds[k], label_noise_mode)`` restricted to the examples
    ``train_subsets[k]`` (in that order). Its train loss, accuracy and stop targets are
    measured on its own training examples and labels; the test split is shared.
    """

    lr: Sequence[float] | None = None  # peak learning rate of each model (for cfg.lr)
    weight_decay: Sequence[float] | None = None  # L2 penalty of each model
    momentum: Sequence[float] | None = None  # of each model, for momentum and nesterov
    label_noise: Sequence[float] | None = None  # share of each model's labels replaced
    label_noise_seeds: Sequence[int] | None = None  # seeds of the corruption; None: the models'
    label_noise_mode: str = "uniform"  # "uniform" or "shuffle" (see dlprobe.data.corrupt_labels)
    # (K, m) indices into the training set: the m examples each model trains on
    train_subsets: Sequence[Sequence[int]] | torch.Tensor | None = None

    @property
    def sets_optimizer(self) -> bool:
        """Whether any optimizer hyperparameter differs between models."""
        return any(v is not None for v in (self.lr, self.weight_decay, self.momentum))

    def check(self, k: int, optimizer: str, data: Dataset) -> None:
        """Raise DlprobeError unless every setting fits K = ``k`` models, the optimizer and
        the data."""

        def values(name: str, low: float, high: float, high_open: bool, low_open=False):
            v = getattr(self, name)
            if v is None:
                return
            if len(v) != k:
                raise DlprobeError(
                    f"per-model {name} needs one value per model ({k}), got {len(v)}"
                )
            for x in v:
                ok = math.isfinite(x) and (x > low if low_open else x >= low)
                ok = ok and (x < high if high_open else x <= high)
                if not ok:
                    raise DlprobeError(
                        f"per-model {name} must be in {'(' if low_open else '['}{low:g}, "
                        f"{high:g}{')' if high_open else ']'}, got {x}"
                    )

        values("lr", 0, math.inf, True, low_open=True)
        values("weight_decay", 0, math.inf, True)
        values("momentum", 0, 1, True)
        values("label_noise", 0, 1, False)
        if self.momentum is not None and optimizer not in ("momentum", "nesterov"):
            raise DlprobeError(
                f"per-model momentum is for the momentum and nesterov optimizers, not {optimizer}"
            )
        if self.momentum is not None and optimizer == "nesterov" and min(self.momentum) == 0:
            raise DlprobeError("per-model momentum must be > 0 for nesterov (torch refuses 0)")
        if self.label_noise is not None and data.task != "classification":
            raise DlprobeError(
                f"per-model label_noise needs class labels; {data.name} is a {data.task} dataset"
            )
        if self.label_noise_seeds is not None:
            if self.label_noise is None:
                raise DlprobeError("label_noise_seeds without label_noise")
            if len(self.label_noise_seeds) != k:
                raise DlprobeError(
                    f"per-model label_noise_seeds needs one seed per model ({k}), "
                    f"got {len(self.label_noise_seeds)}"
                )
        if self.label_noise_mode not in CORRUPTION_MODES:
            raise DlprobeError(
                f"unknown label_noise_mode {self.label_noise_mode!r}; valid: "
                f"{', '.join(CORRUPTION_MODES)}"
            )
        if self.train_subsets is not None:
            subsets = _as_index(self.train_subsets)
            n = data.n_train
            if subsets.dim() != 2 or subsets.shape[0] != k or subsets.shape[1] == 0:
                raise DlprobeError(
                    f"per-model train_subsets must be ({k}, m) indices: m training examples "
                    f"for each model; got shape {tuple(subsets.shape)}"
                )
            if subsets.min() < 0 or subsets.max() >= n:
                raise DlprobeError(f"per-model train_subsets must index [0, {n}): the training set")
            for j, row in enumerate(subsets):
                if row.unique().numel() != row.numel():
                    raise DlprobeError(f"per-model train_subsets[{j}] repeats an example")


def _as_index(subsets) -> torch.Tensor:
    if isinstance(subsets, torch.Tensor):
        if subsets.is_floating_point() or subsets.is_complex() or subsets.dtype == torch.bool:
            raise DlprobeError(f"per-model train_subsets must be integers, got {subsets.dtype}")
        return subsets.to(torch.int64)
    try:
        return torch.tensor([list(row) for row in subsets], dtype=torch.int64)
    except (TypeError, ValueError) as e:
        raise DlprobeError(f"per-model train_subsets must be rows of integers: {e}") from None


class ModelData:
    """The training examples of K models: the dataset's, or each model's own.

    ``n`` is the number of training examples of each model. ``index`` (K, n) picks each
    model's examples from the training set (None: every model has all of them, in the
    dataset's order); ``y`` is the dataset's targets, or (K, n_train) labels when each
    model has its own (``own_labels``). Where inputs are shared (``index`` is None), an
    evaluation runs one forward pass on them for all models.
    """

    def __init__(self, data: Dataset, per_model: PerModel | None, seeds: Sequence[int]):
        self.x, self.y, self.index, self.own_labels = data.x_train, data.y_train, None, False
        if per_model is not None and per_model.label_noise is not None:
            label_seeds = per_model.label_noise_seeds or seeds
            noisy = [
                corrupt_labels(data, p, int(s), per_model.label_noise_mode).y_train
                for p, s in zip(per_model.label_noise, label_seeds, strict=True)
            ]
            self.y, self.own_labels = torch.stack(noisy), True  # (K, n_train)
        if per_model is not None and per_model.train_subsets is not None:
            self.index = _as_index(per_model.train_subsets).to(self.x.device)  # (K, n)
        self.n = data.n_train if self.index is None else self.index.shape[1]

    @property
    def shared(self) -> bool:
        """Whether every model has the dataset's examples and targets."""
        return self.index is None and not self.own_labels

    def batch(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (K, b, ...) and targets (K, b, ...) at positions ``pos`` (K, b) in [0, n)
        of each model's examples."""
        e = pos if self.index is None else torch.gather(self.index, 1, pos)  # (K, b) examples
        return _rows(self.x, e), self._targets(e)

    def chunk(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``start:stop`` of every model, for an evaluation: inputs (b, ...) when
        shared (``index`` is None) else (K, b, ...); targets (b, ...) when ``shared`` else
        (K, b, ...)."""
        if self.index is None:
            x = self.x[start:stop]
            if not self.own_labels:
                return x, self.y[start:stop]
            return x, self.y[:, start:stop]
        e = self.index[:, start:stop]  # (K, b)
        return _rows(self.x, e), self._targets(e)

    def _targets(self, e: torch.Tensor) -> torch.Tensor:
        return torch.gather(self.y, 1, e) if self.own_labels else _rows(self.y, e)


def _rows(t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``t[e]`` for an index tensor ``e`` (K, b): the same rows, by ``index_select`` (on a
    CPU about twice as fast as advanced indexing for a minibatch)."""
    return t.index_select(0, e.reshape(-1)).view(*e.shape, *t.shape[1:])

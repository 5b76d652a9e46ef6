"""The in-memory dataset every layer above works on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from dlprobe import DlprobeError


@dataclass(frozen=True)
class Dataset:
    """A whole dataset as tensors on one device; minibatches are index tensors into it.

    ``task`` is ``"classification"`` (integer labels in ``[0, num_classes)``) or
    ``"regression"`` (float targets of shape ``(n, 1)``).
    """

    name: str
    x_train: torch.Tensor  # (n_train, *input_shape)
    y_train: torch.Tensor  # (n_train,) int64 labels or (n_train, 1) float targets
    x_test: torch.Tensor  # (n_test, *input_shape)
    y_test: torch.Tensor
    task: str
    num_classes: int = 0  # 0 for regression
    meta: dict = field(default_factory=dict)  # provenance: seed, split, domain, ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def input_dim(self) -> int:
        return int(self.x_train[0].numel())

    @property
    def output_dim(self) -> int:
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def to(self, device: torch.device | str) -> Dataset:
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def subset_train(self, n: int, seed: int = 0) -> Dataset:
        """The first ``n`` training examples of a seeded permutation (test split unchanged)."""
        if not 0 < n <= self.n_train:
            raise DlprobeError(f"train subset size must be in [1, {self.n_train}], got {n}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(self.n_train, generator=g)[:n].to(self.x_train.device)
        meta = {**self.meta, "train_subset": n, "train_subset_seed": seed}
        return replace(self, x_train=self.x_train[idx], y_train=self.y_train[idx], meta=meta)

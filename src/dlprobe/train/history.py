"""What training returns: per-epoch and per-step metrics per model, and snapshots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")  # per epoch, per model


@dataclass
class History:
    """Metrics of a population of K models. Lists are indexed [time][model].

    ``accuracy`` lists are empty for regression. ``diverged_at_epoch[k]`` is the epoch in
    which model k's loss became NaN/inf (it was frozen there), else None;
    ``stopped_at_epoch[k]`` the epoch in which it met ``stop_below_grad_norm``.
    """

    seeds: list[int]
    epochs: list[int] = field(default_factory=list)  # epochs after which metrics were taken
    train_loss: list[list[float]] = field(default_factory=list)
    test_loss: list[list[float]] = field(default_factory=list)
    train_accuracy: list[list[float]] = field(default_factory=list)
    test_accuracy: list[list[float]] = field(default_factory=list)
    grad_norm: list[list[float]] = field(default_factory=list)  # full-batch, per eval epoch
    step_loss: list[list[float]] = field(default_factory=list)
    step_grad_norm: list[list[float]] = field(default_factory=list)
    snapshot_epochs: list[int] = field(default_factory=list)
    snapshots: list[torch.Tensor] = field(default_factory=list)  # each (K, P), on CPU
    diverged_at_epoch: list[int | None] = field(default_factory=list)
    stopped_at_epoch: list[int | None] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def num_models(self) -> int:
        return len(self.seeds)

    @property
    def diverged(self) -> list[int]:
        """Indices of models that diverged."""
        return [k for k, e in enumerate(self.diverged_at_epoch) if e is not None]

    def final(self, metric: str) -> list[float]:
        """Last recorded value of a per-epoch metric for every model."""
        return list(getattr(self, metric)[-1])

    def final_records(self) -> list[dict]:
        """Per model: its seed, the last recorded losses (and accuracies), and divergence."""
        names = [n for n in METRICS if getattr(self, n)]
        diverged = set(self.diverged)
        return [
            {"seed": seed, **{n: getattr(self, n)[-1][k] for n in names}, "diverged": k in diverged}
            for k, seed in enumerate(self.seeds)
        ]

    def epoch_records(self) -> list[dict]:
        """Tidy rows ``{epoch, model, seed, train_loss, test_loss, [accuracies], grad_norm}``."""
        rows = []
        for i, epoch in enumerate(self.epochs):
            for k, seed in enumerate(self.seeds):
                row = {"epoch": epoch, "model": k, "seed": seed}
                for name in METRICS:
                    values = getattr(self, name)
                    if values:
                        row[name] = values[i][k]
                if self.grad_norm:
                    row["grad_norm"] = self.grad_norm[i][k]
                rows.append(row)
        return rows

    def step_records(self) -> list[dict]:
        """Tidy rows ``{step, model, loss, grad_norm}`` (empty unless steps were recorded)."""
        return [
            {"step": s, "model": k, "loss": loss, "grad_norm": self.step_grad_norm[s][k]}
            for s, losses in enumerate(self.step_loss)
            for k, loss in enumerate(losses)
        ]

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> History:
        return cls(**state)

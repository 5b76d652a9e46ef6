"""What training returns: per-epoch and per-step metrics per model, and snapshots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")  # per epoch, per model

# Why a model was declared diverged (``History.diverged_reason``).
NON_FINITE_LOSS = "non-finite loss"
NON_FINITE_PARAMETERS = "non-finite parameters"
LOSS_ABOVE_BLOWUP = "loss above blow-up threshold"


@dataclass
class History:
    """Metrics of a population of K models. Lists are indexed [time][model] or [model].

    Rows are taken every ``eval_every_epochs``, after the last epoch, and when every model
    has stopped, so there is always at least one (all-NaN at epoch 0 when every model
    diverged before training). ``accuracy`` lists are empty for regression, ``test`` lists
    when the data has no test split.

    Epochs count completed epochs. ``diverged_at_epoch[k]`` is the number of epochs model k
    had completed when it was found diverged (None: it did not), ``diverged_reason[k]`` why:

    - "non-finite loss": a minibatch loss in the next epoch, or its train loss at an
      evaluation or before training (epoch 0), was NaN/inf;
    - "non-finite parameters": at an evaluation, a parameter was NaN/inf;
    - "loss above blow-up threshold": at an evaluation, its train loss exceeded
      ``blowup_loss_factor * initial_train_loss[k]`` (see ``TrainConfig``).

    A diverged model is frozen at its last finite parameters (where it was found, or, if a
    step overflowed them, where they were at the previous evaluation or before training).
    Its metrics in every row from then on, and its step records from the step it was found
    on, are NaN.
    ``stopped_at_epoch[k]`` is the evaluation at which model k met a stop target and was
    frozen where it was; ``reached_target[k]`` says whether it did (None for every model
    when no stop target was set). ``steps_taken[k]`` counts the optimizer steps that
    updated model k.
    With ``keep_best_test_loss``, ``best_epoch[k]`` is the evaluation at which model k had
    its lowest test loss (the first, on ties; None if it never had a finite one) and
    ``best_params[k]`` its flat parameters then (``Population.flat_params`` order).
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
    initial_train_loss: list[float] = field(default_factory=list)  # per model, before training
    diverged_at_epoch: list[int | None] = field(default_factory=list)
    diverged_reason: list[str | None] = field(default_factory=list)
    stopped_at_epoch: list[int | None] = field(default_factory=list)
    reached_target: list[bool | None] = field(default_factory=list)
    steps_taken: list[int] = field(default_factory=list)  # optimizer steps per model
    best_epoch: list[int | None] = field(default_factory=list)  # with keep_best_test_loss
    best_params: torch.Tensor | None = None  # (K, P) on CPU, at each model's best_epoch
    seconds: float = 0.0

    @property
    def diverged(self) -> list[int]:
        """Indices of models that diverged."""
        return [k for k, e in enumerate(self.diverged_at_epoch) if e is not None]

    def final(self, metric: str) -> list[float]:
        """Last recorded value of a per-epoch metric for every model."""
        return list(getattr(self, metric)[-1])

    def final_records(self) -> list[dict]:
        """Per model: its seed, the last recorded losses (and accuracies, NaN after a
        divergence), whether it diverged, and when (epochs completed) and why."""
        names = [n for n in METRICS if getattr(self, n)]
        return [
            {
                "seed": seed,
                **{n: getattr(self, n)[-1][k] for n in names},
                "diverged": self.diverged_at_epoch[k] is not None,
                "diverged_at_epoch": self.diverged_at_epoch[k],
                "diverged_reason": self.diverged_reason[k] if self.diverged_reason else None,
            }
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

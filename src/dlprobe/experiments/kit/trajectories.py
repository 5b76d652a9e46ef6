"""Training seen as a trajectory: metrics from epoch 0 on, weight snapshots, and models
rebuilt from flat weight vectors (actual-task, optimization-trajectory, error-surface)."""

from __future__ import annotations

import torch
from torch import nn

from dlprobe.config import require
from dlprobe.data import Dataset
from dlprobe.models import MLP
from dlprobe.train import History, Population, TrainConfig, default_loss, evaluate_population


def check_snapshots(train: TrainConfig, group: str = "train") -> None:
    """Snapshots every n epochs, the final weights among them, each with its metrics."""
    every, evals = train.snapshot_every_epochs, train.eval_every_epochs
    require(
        every >= 1 and train.epochs % every == 0,
        f"{group}.epochs ({train.epochs}) must be a multiple of snapshot_every_epochs "
        f"({every} >= 1) so that the final weights are a snapshot",
    )
    require(
        evals >= 1 and every % evals == 0,
        f"{group}.snapshot_every_epochs ({every}) must be a multiple of eval_every_epochs "
        f"({evals}): every snapshot needs its loss",
    )


def initial_metrics(pop: Population, data: Dataset) -> dict[str, list[float]]:
    """Metric name (as History names them) -> value per model (K,) before any training."""
    out = {}
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        loss, accuracy = evaluate_population(pop, x, y, default_loss(data))
        out[f"{split}_loss"] = loss.tolist()
        if accuracy is not None:
            out[f"{split}_accuracy"] = accuracy.tolist()
    return out


def snapshot_metrics(hist: History, initial: dict) -> dict[int, dict[str, list[float]]]:
    """Snapshot epoch -> metric -> value per model: epoch 0 from ``initial``, then ``hist``."""
    at = {0: initial}
    for i, epoch in enumerate(hist.epochs):
        at[epoch] = {name: getattr(hist, name)[i] for name in initial}
    return {epoch: at[epoch] for epoch in hist.snapshot_epochs}


def weight_trajectories(hist: History) -> torch.Tensor:
    """(K, T, P): every model's flat weights at every snapshot epoch."""
    return torch.stack(hist.snapshots, dim=1)


def model_to_vector(model: nn.Module) -> torch.Tensor:
    """(P,): the model's parameters as one flat vector, in parameters() order, detached."""
    return nn.utils.parameters_to_vector(model.parameters()).detach()


def vector_to_model(template: MLP, vector: torch.Tensor) -> MLP:
    """A copy of ``template`` whose parameters are the flat vector (P,) (parameters() order)."""
    model = MLP(template.widths, template.activation).to(vector.device, vector.dtype)
    nn.utils.vector_to_parameters(vector, model.parameters())
    return model

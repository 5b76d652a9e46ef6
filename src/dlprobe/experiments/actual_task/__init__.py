"""HW1-1 deep vs shallow on a classification task: CNNs and MLPs of equal parameter count.

Protocol: on one dataset, build MLPs with 1, 3 and 6 hidden layers and CNNs with 1, 2 and
3 conv layers, every model solved for the same parameter budget (all counts within 2% of
each other); train each as a population of seeds with the same optimizer and record the
training and test loss and accuracy after every epoch. mnist1d (the default) is where the
two families differ most: its signals are shifted and scaled, which convolutions absorb.
"""

from __future__ import annotations

from dlprobe.experiments.actual_task.figures import figures
from dlprobe.experiments.actual_task.protocol import (
    DEFAULT_BUDGETS,
    PROFILES,
    Config,
    model_specs,
    run,
)
from dlprobe.experiments.actual_task.report import observations, settings, summarize
from dlprobe.experiments.base import Experiment

__all__ = ["Config", "DEFAULT_BUDGETS", "EXPERIMENT", "PROFILES", "model_specs"]

EXPERIMENT = Experiment(
    id="actual-task",
    homework="HW1-1",
    title="Deep vs shallow on a classification task",
    question="With the same number of parameters, do deeper networks, and CNNs rather than "
    "MLPs, learn a real classification task better?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "train-loss": "training loss per epoch (log scale) of every model; line = geometric "
        "mean over seeds, band = min-max; CNNs solid, MLPs dashed",
        "train-accuracy": "training accuracy per epoch; line = mean over seeds, band = min-max",
        "test-accuracy": "test accuracy per epoch; line = mean over seeds, band = min-max",
    },
    quick_minutes=0.6,
    full_differs="mnist1d (embedded, 1-D signals) and 20 epochs with 3 seeds instead of the "
    "homework's MNIST; the full profile trains on MNIST with 5 seeds.",
)

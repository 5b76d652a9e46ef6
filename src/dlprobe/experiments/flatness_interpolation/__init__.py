"""HW1-3 part 1: flatness seen along the straight line between two trained models.

Protocol: train m1 and m2 from the same initialization with two approaches that differ in
one setting (batch size 64 vs 1024; learning rate 1e-3 vs 1e-2), then evaluate, without
any training, the models theta(alpha) = (1 - alpha) theta1 + alpha theta2 for alpha from
-1 to 2 on the training and the test set (Goodfellow et al. 2015; Keskar et al. 2017).
Every model gets the same number of optimizer steps (see ``sensitivity`` for why steps and
not epochs): a batch of 1024 would otherwise get 16 times fewer updates than one of 64.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.flatness_interpolation.figures import figures
from dlprobe.experiments.flatness_interpolation.protocol import (
    METRICS,
    PROFILES,
    Config,
    evaluator,
    load_data,
    run,
)
from dlprobe.experiments.flatness_interpolation.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "METRICS", "PROFILES", "evaluator", "load_data"]

EXPERIMENT = Experiment(
    id="flatness-interpolation",
    homework="HW1-3",
    title="Flatness by interpolation between two trained models",
    question="Along the straight line between models trained with small and large batches "
    "(or small and large learning rates), how do training and test loss and accuracy change, "
    "and which minimum is flatter?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "interpolation-batch-size": "training and test cross-entropy (left axis, log scale, "
        "solid) and accuracy (right axis, dashed) of θ(α) = (1 − α)·θ1 + α·θ2, θ1 trained "
        "with the small and θ2 with the large batch; line = mean over pairs (geometric for "
        "the loss), band = min-max",
        "interpolation-learning-rate": "the same for θ1 trained with the small and θ2 with "
        "the large learning rate",
    },
    quick_minutes=0.4,
    full_differs="mnist1d (2000 training examples, so that batch size 64 also nears a "
    "minimum within the budget; MLP 40-100-100-10) and 3000 steps per model instead of MNIST.",
)

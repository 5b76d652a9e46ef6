"""HW1-3 part 2: sensitivity (and sharpness) of models trained with different batch sizes.

Protocol: for each batch size, from 8 up to the whole training set, train a population of
seeds for the same number of optimizer steps; then measure, per model, the training and
test loss and accuracy, the input sensitivity by both definitions (the homework's: the norm
of the gradient of ONE example's loss with respect to its input, averaged over the test
set; Novak et al. 2018: the norm of the Jacobian of the class probabilities with respect
to the input) and the sharpness of the loss on training examples.

Why a fixed step budget and not a fixed number of epochs: with equal epochs a batch of 8
gets 125 times more updates than full batch on 1000 examples, so the largest batches would
stop far from any minimum and the comparison would measure under-training; equal steps
give every model the same number of updates and keep the run time bounded (the largest
batches would otherwise need thousands of epochs to match).
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.sensitivity.figures import figures
from dlprobe.experiments.sensitivity.protocol import PROFILES, Config, run
from dlprobe.experiments.sensitivity.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "PROFILES"]

EXPERIMENT = Experiment(
    id="sensitivity",
    homework="HW1-3",
    title="Sensitivity and sharpness vs batch size",
    question="Do models trained with larger batches have a different input sensitivity, and "
    "does sensitivity track generalization?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "loss-sensitivity": "training and test loss (left, log scale) and the homework's "
        "sensitivity (right, dashed) against batch size; line = mean over seeds (geometric "
        "for the loss), band = min-max",
        "accuracy-sensitivity": "training and test accuracy (left) and the homework's "
        "sensitivity (right, dashed) against batch size; line = mean, band = min-max over seeds",
        "sensitivity-sharpness": "the two sensitivity definitions and the sharpness against "
        "batch size; line = mean over seeds, band = min-max",
    },
    quick_minutes=0.5,
    full_differs="mnist1d (1000 training examples, MLP 40-64-64-10) and 2000 steps per model "
    "instead of MNIST with batch sizes 8 to 4096 and the full set.",
)

"""HW1-3 bonus: sharpness of the minima reached with different batch sizes, and why
sharpness alone cannot explain generalization (Dinh et al. 2017).

Protocol: for each of at least 10 batch sizes train a population of seeds for the same
number of optimizer steps (see ``sensitivity`` for why steps and not epochs), then measure
on 500 training examples, in float64: Keskar et al.'s sharpness (the largest relative
loss rise in the box |z_i| <= eps (|theta_i| + 1)), its second-order estimate
||H||_2 eps^2 / (2 (1 + L)), the largest loss rise in the eps-ball, and the width of the
valley at a given loss height along random directions. Then rescale one trained ReLU
model's first layer by a and the next by 1/a: the function (so loss and accuracy) stays the
same while every sharpness changes.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.sharpness.figures import figures
from dlprobe.experiments.sharpness.protocol import MEASURES, PROFILES, Config, run
from dlprobe.experiments.sharpness.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "MEASURES", "PROFILES"]

EXPERIMENT = Experiment(
    id="sharpness",
    homework="HW1-3 bonus",
    title="Sharpness vs batch size, and the rescaling counterpoint",
    question="Do large batches find sharper minima (Keskar et al.), and does sharpness by "
    "itself explain generalization when the same function can be made sharp or flat "
    "(Dinh et al.)?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "sharpness-vs-batch-size": "four sharpness measures (log scale; the valley width "
        "grows with flatness), training and test accuracy and loss against batch size; "
        "line = mean over seeds (geometric on log axes), band = min-max",
        "dinh-rescaling": "left: each measure of the rescaled model relative to the "
        "original (log-log); right: its training and test loss and accuracy, unchanged",
    },
    quick_minutes=0.6,
    full_differs="mnist1d (2000 training examples, MLP 40-32-32-10 with 2698 parameters), "
    "2000 steps and 2 seeds instead of MNIST with a 26 506-parameter model.",
)

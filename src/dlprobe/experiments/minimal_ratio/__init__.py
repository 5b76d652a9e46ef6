"""HW1-2 what happens when the gradient is almost zero: the minimal ratio against the loss.

Protocol: train many seeds of one small network (the homework's 1-10-10-1, 141 parameters,
a non-linear activation) on a sine, as one population. Phase 1 minimizes the loss; phase 2
changes the objective to the squared gradient norm and runs until each model's norm is
below a threshold (the model is then frozen) or an epoch limit. At every final point,
measure the loss and gradient norm (float64), the exact Hessian spectrum (float64), and the
minimal ratio by both definitions: the fraction of eigenvalues above a tolerance, and the
fraction of random nearby parameter vectors whose loss is higher.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.minimal_ratio.figures import figures
from dlprobe.experiments.minimal_ratio.protocol import PROFILES, Config, run
from dlprobe.experiments.minimal_ratio.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "PROFILES"]

EXPERIMENT = Experiment(
    id="minimal-ratio",
    homework="HW1-2",
    title="When the gradient is almost zero: minimal ratio against loss",
    question="At points where the gradient is almost zero, are we at a minimum or a saddle? "
    "How does the minimal ratio (share of positive Hessian eigenvalues) relate to the loss?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "ratio-vs-loss": "minimal ratio against the final training loss, one point per run; "
        "left: fraction of Hessian eigenvalues above the tolerance, right: fraction of random "
        "nearby parameter vectors with higher loss; colour = final gradient norm; crosses = "
        "runs whose gradient norm stayed above the threshold",
        "spectra": "sorted exact Hessian eigenvalues (symlog) of the lowest-, median- and "
        "highest-loss runs; the grey band is counted as zero",
        "ratio-vs-tolerance": "the eigenvalue minimal ratio recomputed from the saved spectra "
        "for a range of zero tolerances (relative to each run's largest |eigenvalue|)",
    },
    quick_minutes=0.3,
    full_differs="same scale as the homework (100 runs of 1-10-10-1); quick allows 1500 "
    "instead of 10 000 epochs for the gradient-norm phase and samples 1000 instead of 5000 "
    "neighbours per run.",
)

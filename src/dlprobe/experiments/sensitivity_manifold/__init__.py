"""Lecture: sensitivity along an ellipse through three training inputs (Novak et al. 2018).

Protocol: train MLP classifiers (a population of seeds). Pick three training inputs of
the same class, or of three different classes, and run through them the ellipse
``x(t) = c + a cos t + b sin t`` that meets them exactly at t = 0, 2π/3 and 4π/3 (c, a, b
solved from the three inputs). At evenly spaced angles along it, measure the input
sensitivity (Frobenius norm of the Jacobian of the class probabilities with respect to
the input) and the predicted class, once at initialization and once after training.
The claim: a trained network is insensitive at the data and sensitive between the data.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.sensitivity_manifold.figures import figures
from dlprobe.experiments.sensitivity_manifold.protocol import (
    ANCHOR_T,
    PROFILES,
    Config,
    ellipse_through,
    per_ellipse,
    run,
)
from dlprobe.experiments.sensitivity_manifold.report import observations, settings, summarize

__all__ = ["ANCHOR_T", "Config", "EXPERIMENT", "PROFILES", "ellipse_through", "per_ellipse"]

EXPERIMENT = Experiment(
    id="sensitivity-manifold",
    homework="Lecture",
    title="Sensitivity along an ellipse through training inputs",
    question="Is a trained network's input sensitivity low at the training data and high "
    "between training points (Novak et al. 2018)?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "ellipse-example": "Jacobian sensitivity along one ellipse through three training "
        "inputs (dotted lines) for the trained model (solid) and at initialization (dashed), "
        "log scale; background shaded by the trained model's predicted class",
        "ellipse-mean": "geometric mean (line) and interquartile band of the sensitivity over "
        "all ellipses and models, trained vs at initialization; the three inputs sit at the "
        "same angles on every ellipse",
        "ratio": "per ellipse and model: mean sensitivity between the inputs divided by that "
        "within the window around them; above 1 = lower at the data",
    },
    quick_minutes=0.2,
    full_differs="digits and 128-128 MLPs (30 epochs) instead of MNIST, as in Novak et al. "
    "2018, and 512-512 MLPs (20 epochs).",
)

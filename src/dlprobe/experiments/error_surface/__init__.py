"""HW1-2 bonus: the error surface of a tiny network, seen four ways.

Protocol: train a tiny MLP (the presentation's 1-4-4-1, 33 parameters) on a 1-D function
from several seeds, keeping its weights every few epochs. Then, without training again:
(a) the loss on the straight line theta(alpha) = (1 - alpha) theta_0 + alpha theta_1 from
each run's initial to its final weights (Goodfellow et al. 2015); for the run with the
lowest final loss, (b) the loss when each parameter alone is moved, (c) the loss of many
Gaussian perturbations of the final weights at several radii, reduced to 2-D by PCA and
by PCA then t-SNE, and (d) the loss on the plane spanned by two random filter-normalized
directions through the final weights (Li et al. 2018), with the training trajectory
projected onto that plane.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.error_surface.figures import figures
from dlprobe.experiments.error_surface.protocol import (
    PROFILES,
    Config,
    batch_losses,
    parameter_names,
    run,
    vector_to_model,
)
from dlprobe.experiments.error_surface.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "PROFILES", "batch_losses", "parameter_names", "vector_to_model"]

EXPERIMENT = Experiment(
    id="error-surface",
    homework="HW1-2 bonus",
    title="The error surface of a tiny network",
    question="What does the loss look like around and between the initial and final weights "
    "of a tiny network: along the straight line, per parameter, under random perturbations, "
    "and on a 2-D slice?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "line-init-final": "training loss at θ(α) = (1 − α) θ_initial + α θ_final for every "
        "run (log scale); no training between the points",
        "per-parameter": "training loss when a single parameter is moved by δ and all others "
        "stay at their final values (log scale, shared axes); one panel per parameter",
        "perturbed-samples": "Gaussian perturbations of the final weights at several radii, "
        "reduced to 2-D by PCA (left) and PCA then t-SNE (right), coloured by training loss "
        "(log colour scale)",
        "surface-contour": "log10 training loss on the plane of two random filter-normalized "
        "directions through the final weights, with the training trajectory projected on it",
        "surface-3d": "the same plane as a 3-D surface (height: log10 training loss)",
    },
    quick_minutes=0.2,
    full_differs="quick trains 4 seeds for 2000 epochs and draws 150 samples per radius; "
    "full: 8 seeds, 10 000 epochs, 500 samples per radius, a 61x61 surface.",
)

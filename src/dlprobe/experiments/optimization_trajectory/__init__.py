"""HW1-2 optimization: the weights of 8 training events projected into one common 2-D basis.

Protocol: train one MLP architecture 8 times (different seeds, one population) and
collect every event's weights every 3 epochs, with its loss and accuracy at that point.
All snapshots of all events are stacked and reduced by ONE PCA (a per-run PCA would put
each trajectory in its own basis), for the first layer alone and for the whole model,
and by PCA followed by t-SNE. A "permuted twin" joins as a control: event 0's trajectory
with its hidden units permuted, i.e. the same functions at other points of weight space
(training a permuted initialization gives exactly the permuted trajectory). Then every
event's hidden units are aligned to event 0 (Hungarian matching of the final models; the
same permutation is applied to all snapshots of the event so its trajectory stays
continuous) and everything is projected again, to see which "different minima" were the
same function up to a permutation of units.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.optimization_trajectory.figures import figures
from dlprobe.experiments.optimization_trajectory.protocol import (
    PROFILES,
    TWIN,
    Config,
    align_trajectory,
    first_layer_slice,
    model_to_vector,
    permute_trajectory,
    random_permutations,
    run,
    vector_to_model,
)
from dlprobe.experiments.optimization_trajectory.report import observations, settings, summarize

__all__ = [
    "Config",
    "EXPERIMENT",
    "PROFILES",
    "TWIN",
    "align_trajectory",
    "first_layer_slice",
    "model_to_vector",
    "permute_trajectory",
    "random_permutations",
    "vector_to_model",
]

EXPERIMENT = Experiment(
    id="optimization-trajectory",
    homework="HW1-2",
    title="Optimization trajectories of 8 training events",
    question="Where do 8 trainings of the same network go in weight space, and are their "
    "'different' minima different functions or the same one up to a permutation of units?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "pca-first-layer": "first layer's weights at every snapshot of every event, projected "
        "by one PCA fitted on all of them; o start, * end, numbers = training accuracy",
        "pca-whole-model": "all weights at every snapshot of every event, one common PCA; "
        "the dashed black trajectory is event 0 with its hidden units permuted",
        "pca-first-layer-aligned": "as pca-first-layer after permuting every event's hidden "
        "units to match event 0 (the twin now lies on event 0)",
        "pca-whole-model-aligned": "as pca-whole-model after aligning hidden units to event 0",
        "pca-tsne": "PCA to 10 dimensions then t-SNE of all whole-model snapshots, as trained "
        "and aligned; t-SNE keeps neighbourhoods, not distances",
        "final-distances": "L2 distance between the final weight vectors of every pair of "
        "events, as trained and after alignment; the twin's distance to event 0 drops to 0",
    },
    quick_minutes=0.1,
    full_differs="digits (8x8 images) with a 64-16-16-10 MLP instead of MNIST; full uses "
    "MNIST with a 784-16-16-10 MLP.",
)

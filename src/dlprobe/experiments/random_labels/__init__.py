"""HW1-3 generalization: can a network fit random labels?

Protocol (Zhang et al. 2017; Arpit et al. 2017): shuffle a fraction p of the training
labels (the test labels stay true) and train the same MLP until the training set is
fitted. p = 0 is the network on true labels, p = 1 is fully random labels; in between,
the lecture's noise sweep (0, 20, ..., 100%). Every level is a population of seeds, all
levels share the model seeds and the training inputs. The corrupted examples of a level
are a superset of those of every lower level (one seeded permutation, cut at p * n).
After training: epochs needed to fit the (corrupted) training labels, the peak and final
test accuracy, the critical-sample ratio on a fixed set of training inputs and the weight
norms of every final model, against the noise level.
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.random_labels.figures import figures
from dlprobe.experiments.random_labels.protocol import PROFILES, Config, prepare_data, run
from dlprobe.experiments.random_labels.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "PROFILES", "prepare_data"]

EXPERIMENT = Experiment(
    id="random-labels",
    homework="HW1-3",
    title="Fitting random labels",
    question="Can a network fit randomly shuffled training labels, and what happens to test "
    "accuracy, the critical-sample ratio and the weight norms as the share of random labels grows?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "loss": "training (solid) and test (dashed) cross-entropy per epoch (log scale), the "
        "same MLP on true labels and on random training labels; line = geometric mean over "
        "seeds, band = min-max",
        "accuracy": "training (solid, against the labels trained on) and test (dashed, true "
        "labels) accuracy per epoch, true vs random training labels; band = min-max over seeds",
        "noise-curves": "training and test accuracy per epoch at every share of randomized "
        "labels; line = mean over seeds, band = min-max",
        "noise-fit": "left: final training and test accuracy and the best test accuracy seen "
        "during training vs label noise (dots: runs, line: mean); right: first epoch with "
        "training accuracy above the threshold (x: runs that never got there)",
        "noise-complexity": "critical-sample ratio and weight norms of the final models vs "
        "label noise (dots: runs, line: mean, geometric on log axes)",
    },
    quick_minutes=0.7,
    full_differs="scikit-learn's 8x8 digits (1347 training examples, 50 epochs) instead of "
    "MNIST (60 000 examples, 200 epochs in the full profile); same 3x256 MLP.",
)

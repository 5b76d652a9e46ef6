"""Lecture: linear regions of a ReLU network on the plane through three training inputs.

Protocol: build ReLU MLP classifiers (a population of seeds). For planes through three
training inputs of different classes, sample a grid and number the distinct activation
patterns (the network is affine on each such region), before and after training. Count
the regions and compare the size of the region a grid point lies in near the three
inputs with that elsewhere on the plane (Novak et al. 2018: regions are larger near the
data after training).
"""

from __future__ import annotations

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.linear_regions.figures import figures, region_colours
from dlprobe.experiments.linear_regions.protocol import PROFILES, Config, mean_anchor_distance, run
from dlprobe.experiments.linear_regions.report import observations, settings, summarize

__all__ = ["Config", "EXPERIMENT", "PROFILES", "mean_anchor_distance", "region_colours"]

EXPERIMENT = Experiment(
    id="linear-regions",
    homework="Lecture",
    title="Linear regions of a ReLU network through training inputs",
    question="How does training change the piecewise-linear regions of a ReLU network "
    "around the data: are they larger near the training inputs (Novak et al. 2018)?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "regions": "activation regions (one colour per region, neighbours differ) on planes "
        "through three training inputs (the first planes, first model), before and after "
        "training; dashed circles: the 'near' radius around each input",
        "region-stats": "left: number of regions on the grid before and after training; right: "
        "mean size of the region a grid point lies in near the inputs divided by that "
        "elsewhere (above 1: larger regions near the data)",
    },
    quick_minutes=0.2,
    full_differs="digits and 64-64 MLPs (30 epochs) on a 200x200 grid instead of MNIST, as in "
    "Novak et al. 2018, and 200-200 MLPs (20 epochs) on a 400x400 grid.",
)

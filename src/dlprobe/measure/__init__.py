"""Probes: pure functions of (model, loss, data) that work on any ``nn.Module``.

Each leaves the model as it found it (parameters, ``.grad``, train/eval mode), prints
nothing, and raises ``dlprobe.DlprobeError`` for bad input. Every one is tested against
a brute-force computation on a tiny model (tests/measure).

    from dlprobe.measure import hessian_eigenvalues, minimal_ratio, sensitivity
    eigs = hessian_eigenvalues(model, F.mse_loss, x, y)     # float64, ascending
    minimal_ratio(eigs).positive                            # fraction of eigenvalues > tol
"""

from dlprobe.measure.alignment import align_hidden_units, permute_hidden_units
from dlprobe.measure.critical import CriticalSampleRatio, critical_sample_ratio
from dlprobe.measure.curvature import (
    TraceEstimate,
    hessian_spectral_density,
    hessian_trace,
    top_hessian_eigenvalues,
)
from dlprobe.measure.gradient import gradient_norm, population_gradient_norm, population_loss
from dlprobe.measure.hessian import (
    hessian,
    hessian_eigenvalues,
    population_hessian,
    population_hessian_eigenvalues,
)
from dlprobe.measure.interpolate import classification_metrics, interpolate
from dlprobe.measure.minimal_ratio import (
    MinimalRatio,
    SampledMinimalRatio,
    minimal_ratio,
    minimal_ratio_by_sampling,
)
from dlprobe.measure.norms import WeightNorms, weight_norms
from dlprobe.measure.regions import LinearRegions, linear_regions, mean_region_size_near_anchors
from dlprobe.measure.rescale import rescale_relu_layers
from dlprobe.measure.sensitivity import Sensitivity, sensitivity
from dlprobe.measure.sharpness import SharpnessResult, ValleyWidth, sharpness, valley_width
from dlprobe.measure.surface import (
    Surface,
    filter_normalize,
    loss_on_plane,
    loss_surface,
    plane_through,
    project_onto_directions,
    random_directions,
)
from dlprobe.measure.trajectories import Projection, project_trajectories

__all__ = [
    "CriticalSampleRatio",
    "LinearRegions",
    "MinimalRatio",
    "Projection",
    "SampledMinimalRatio",
    "Sensitivity",
    "SharpnessResult",
    "Surface",
    "TraceEstimate",
    "ValleyWidth",
    "WeightNorms",
    "align_hidden_units",
    "classification_metrics",
    "critical_sample_ratio",
    "filter_normalize",
    "gradient_norm",
    "hessian",
    "hessian_eigenvalues",
    "hessian_spectral_density",
    "hessian_trace",
    "interpolate",
    "linear_regions",
    "loss_on_plane",
    "loss_surface",
    "mean_region_size_near_anchors",
    "minimal_ratio",
    "minimal_ratio_by_sampling",
    "permute_hidden_units",
    "plane_through",
    "population_gradient_norm",
    "population_hessian",
    "population_hessian_eigenvalues",
    "population_loss",
    "project_onto_directions",
    "project_trajectories",
    "random_directions",
    "rescale_relu_layers",
    "sensitivity",
    "sharpness",
    "top_hessian_eigenvalues",
    "valley_width",
    "weight_norms",
]

"""Probes: pure functions of (model, loss, data) that work on any ``nn.Module``.

Each leaves the model as it found it (parameters, ``.grad``, train/eval mode), prints
nothing, and raises ``dlprobe.DlprobeError`` for bad input. Every one is tested against
a brute-force computation on a tiny model (tests/measure).

    from dlprobe.measure import hessian_eigenvalues, minimal_ratio, sensitivity
    eigs = hessian_eigenvalues(model, F.mse_loss, x, y)     # float64, ascending
    minimal_ratio(eigs).positive                            # fraction of eigenvalues > tol

## Data, precision, parameters

The loss-based probes (gradient, Hessian and its spectrum, sharpness) take the data
either as two tensors ``x, y`` on the model's device, or as one iterable of ``(x, y)``
batches such as a ``DataLoader`` (``y`` left out; batches are moved to the model's
device). The loss is the mean over all examples, exactly as on one concatenated batch;
``loss_fn`` must return a scalar (a loss with ``reduction="none"`` is refused). The
curvature probes compute in float64 by default, exact for small models; pass
``dtype=torch.float32`` for large ones. ``params=[names]`` restricts them to a block of
parameters (one layer's spectrum).

## Worked example: the curvature of a ResNet-18

Random weights and random CIFAR-sized data, so nothing is downloaded. On a 2-core CPU
this takes a few minutes (each Hessian-vector product costs about two gradients); on
a GPU, seconds.

```python
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet18

from dlprobe.measure import hessian_spectral_density, hessian_trace, top_hessian_eigenvalues

torch.manual_seed(0)
model = resnet18(num_classes=10)  # 11.2 M parameters
x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
loader = DataLoader(TensorDataset(x, y), batch_size=8)  # or pass x, y directly
loss = F.cross_entropy

# the two largest eigenvalues and their eigenvectors (11.2 M x 2), in float32
eigenvalues, eigenvectors = top_hessian_eigenvalues(
    model, loss, loader, k=2, tol=1e-3, dtype=torch.float32, return_eigenvectors=True
)
# the same for the Hessian block of the last layer alone
last_layer = top_hessian_eigenvalues(
    model, loss, loader, params=["fc.weight", "fc.bias"], dtype=torch.float32
)
# the trace, with a standard error (one probe vector at a time: memory stays bounded)
trace = hessian_trace(model, loss, loader, n_samples=20, dtype=torch.float32)
print(f"lambda_max {eigenvalues[0]:.4g}, trace {trace.estimate:.4g} +- {trace.stderr:.2g}")
# the eigenvalue density by stochastic Lanczos quadrature
grid, density = hessian_spectral_density(
    model, loss, loader, n_probes=1, lanczos_steps=30, dtype=torch.float32
)
```
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
from dlprobe.measure.pac_bayes import PacBayesFlatness, pac_bayes_flatness
from dlprobe.measure.regions import (
    LinearRegions,
    PathTransitions,
    linear_regions,
    mean_region_size_near_anchors,
    path_transitions,
    plane_coordinates,
)
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
    "PacBayesFlatness",
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
    "path_transitions",
    "plane_coordinates",
    "PathTransitions",
    "loss_on_plane",
    "loss_surface",
    "mean_region_size_near_anchors",
    "minimal_ratio",
    "minimal_ratio_by_sampling",
    "pac_bayes_flatness",
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

"""Every probe leaves the model as it found it: parameters, .grad, train/eval mode, buffers."""

import pytest
import torch
import torch.nn.functional as F
from probe_util import assert_untouched, snapshot

from dlprobe import measure
from dlprobe.models import MLP


def _classifier():
    torch.manual_seed(0)
    model = MLP([3, 6, 5, 3], "relu")
    x = torch.randn(12, 3)
    y = torch.randint(0, 3, (12,))
    model.train()
    model(x).sum().backward()  # leave a .grad behind that a probe must not touch
    return model, x, y


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _batches(x, y):
    return [(x[:5], y[:5]), (x[5:], y[5:])]


def _other(model):
    torch.manual_seed(1)
    return MLP([3, 6, 5, 3], "relu")


PROBES = {
    "gradient_norm": lambda m, x, y: measure.gradient_norm(m, F.cross_entropy, x, y),
    "hessian": lambda m, x, y: measure.hessian(m, F.cross_entropy, x, y),
    "hessian_eigenvalues": lambda m, x, y: measure.hessian_eigenvalues(m, F.cross_entropy, x, y),
    "minimal_ratio_by_sampling": lambda m, x, y: measure.minimal_ratio_by_sampling(
        m, F.cross_entropy, x, y, n_samples=16
    ),
    "top_hessian_eigenvalues": lambda m, x, y: measure.top_hessian_eigenvalues(
        m, F.cross_entropy, x, y, k=2
    ),
    "hessian_trace": lambda m, x, y: measure.hessian_trace(m, F.cross_entropy, x, y, n_samples=4),
    "hessian_spectral_density": lambda m, x, y: measure.hessian_spectral_density(
        m, F.cross_entropy, x, y, n_probes=1, lanczos_steps=5
    ),
    "sensitivity-loss": lambda m, x, y: measure.sensitivity(m, x, y, F.cross_entropy),
    "sensitivity-jacobian": lambda m, x, y: measure.sensitivity(m, x, definition="jacobian"),
    "sharpness-keskar": lambda m, x, y: measure.sharpness(m, F.cross_entropy, x, y, steps=3),
    "sharpness-ball": lambda m, x, y: measure.sharpness(
        m, F.cross_entropy, x, y, method="ball", steps=3
    ),
    "sharpness-hessian": lambda m, x, y: measure.sharpness(
        m, F.cross_entropy, x, y, method="hessian"
    ),
    "valley_width": lambda m, x, y: measure.valley_width(
        m, F.cross_entropy, x, y, height=0.1, n_directions=2
    ),
    "rescale_relu_layers": lambda m, x, y: measure.rescale_relu_layers(m, 0, 3.0),
    "interpolate": lambda m, x, y: measure.interpolate(
        m, _other(m), [0.0, 0.5], lambda mm: measure.classification_metrics(mm, x, y)
    ),
    "loss_surface": lambda m, x, y: measure.loss_surface(
        m, F.cross_entropy, x, y, grid=torch.linspace(-1, 1, 3)
    ),
    "align_hidden_units": lambda m, x, y: measure.align_hidden_units(_other(m), m),
    "loss_on_plane": lambda m, x, y: measure.loss_on_plane(
        m,
        F.cross_entropy,
        x,
        y,
        (_flat(m), _flat(_other(m)), 2 * _flat(m)),
        torch.linspace(-1, 1, 3),
        torch.linspace(-1, 1, 3),
    ),
    "weight_norms": lambda m, x, y: measure.weight_norms(m),
    "critical_sample_ratio": lambda m, x, y: measure.critical_sample_ratio(m, x, 0.1, steps=3),
    "linear_regions": lambda m, x, y: measure.linear_regions(m, x[0], x[1], x[2], resolution=8),
    "path_transitions": lambda m, x, y: measure.path_transitions(m, x[:6]),
    "pac_bayes_flatness": lambda m, x, y: measure.pac_bayes_flatness(
        m,
        F.cross_entropy,
        x,
        y,
        initial=_flat(_other(m)),
        n_train=12,
        samples=2,
        bisection_steps=3,
    ),
    # the same probes with their newer options: batches, parameter blocks, precision
    "gradient_norm-batches-params": lambda m, x, y: measure.gradient_norm(
        m, F.cross_entropy, _batches(x, y), params=["1.weight"], dtype=torch.float64
    ),
    "hessian-chunks-params": lambda m, x, y: measure.hessian(
        m, F.cross_entropy, _batches(x, y), params=["3.bias"], chunk_size=2
    ),
    "hessian_eigenvalues-vectors": lambda m, x, y: measure.hessian_eigenvalues(
        m, F.cross_entropy, x, y, return_eigenvectors=True
    ),
    "top_hessian_eigenvalues-vectors-float32": lambda m, x, y: measure.top_hessian_eigenvalues(
        m, F.cross_entropy, _batches(x, y), k=2, return_eigenvectors=True, dtype=torch.float32
    ),
    "hessian_trace-batches": lambda m, x, y: measure.hessian_trace(
        m, F.cross_entropy, _batches(x, y), n_samples=4, probes_per_batch=3, params=["1.bias"]
    ),
    "hessian_spectral_density-batches": lambda m, x, y: measure.hessian_spectral_density(
        m, F.cross_entropy, _batches(x, y), n_probes=1, lanczos_steps=5, dtype=torch.float32
    ),
    "sharpness-ball-batches": lambda m, x, y: measure.sharpness(
        m, F.cross_entropy, _batches(x, y), method="ball", steps=3
    ),
    "valley_width-batches": lambda m, x, y: measure.valley_width(
        m, F.cross_entropy, _batches(x, y), height=0.1, n_directions=2, dtype=torch.float32
    ),
    "minimal_ratio_by_sampling-batches": lambda m, x, y: measure.minimal_ratio_by_sampling(
        m, F.cross_entropy, _batches(x, y), n_samples=8
    ),
}


@pytest.mark.parametrize("name", list(PROBES))
def test_probe_leaves_model_untouched(name):
    model, x, y = _classifier()
    before = snapshot(model)
    PROBES[name](model, x, y)
    assert_untouched(model, before)


# Exported functions that take no model (tensors in, numbers out), or that are covered
# above through a variant name, or that take a population's stacked tensors.
NOT_MODEL_PROBES = {
    "minimal_ratio",
    "project_trajectories",
    "plane_through",
    "project_onto_directions",
    "filter_normalize",
    "random_directions",
    "classification_metrics",
    "permute_hidden_units",
    "mean_region_size_near_anchors",
    "plane_coordinates",
    "population_hessian",
    "population_hessian_eigenvalues",
    "population_gradient_norm",
    "population_loss",
}


def test_every_exported_model_probe_is_in_the_purity_test():
    functions = {n for n in measure.__all__ if n[0].islower()}
    covered = {n.split("-")[0] for n in PROBES}
    assert functions - covered - NOT_MODEL_PROBES == set()

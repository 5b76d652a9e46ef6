"""HVP-based curvature estimates against the exact float64 spectrum of a 283-parameter MLP."""

import math

import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier

from dlprobe import DlprobeError
from dlprobe.measure.curvature import (
    hessian_spectral_density,
    hessian_trace,
    top_hessian_eigenvalues,
)
from dlprobe.measure.hessian import hessian


@pytest.fixture(scope="module")
def problem():
    """MLP 4-16-10-3 tanh (283 parameters), cross-entropy on 64 points, exact Hessian."""
    model, loss_fn, x, y = tiny_classifier("tanh", widths=(4, 16, 10, 3), n=64)
    h = hessian(model, loss_fn, x, y)
    lam = torch.linalg.eigvalsh(h)  # (283,) ascending
    return model, loss_fn, x, y, h, lam


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_top_eigenvalues_match_exact_spectrum(problem, which):
    model, loss_fn, x, y, _, lam = problem
    assert lam[0] < 0 < lam[-1]  # an indefinite Hessian, so LA, SA and LM differ
    expected = {"LA": lam.flip(0), "SA": lam, "LM": lam[lam.abs().argsort(descending=True)]}
    top = top_hessian_eigenvalues(model, loss_fn, x, y, k=4, which=which)
    assert top.dtype == torch.float64 and top.shape == (4,)
    torch.testing.assert_close(top, expected[which][:4], rtol=1e-6, atol=0)


def test_trace_within_standard_errors_of_exact(problem):
    model, loss_fn, x, y, h, lam = problem
    exact = float(lam.sum())
    # per-probe variance of v^T H v for Rademacher v: 2 * sum_{i != j} H_ij^2
    sd = math.sqrt(2 * float((h**2).sum() - (h.diagonal() ** 2).sum()))
    for n in (100, 2000):
        est = hessian_trace(model, loss_fn, x, y, n_samples=n, seed=1)
        assert est.n_samples == n
        assert abs(est.estimate - exact) < 4 * est.stderr
        # the reported standard error estimates the true one (within 50% / 10%)
        assert est.stderr == pytest.approx(sd / math.sqrt(n), rel=0.5 if n == 100 else 0.1)
    assert abs(est.estimate - exact) < 0.1 * abs(exact)  # many probes: close


def test_spectral_density_is_a_density_of_the_spectrum(problem):
    model, loss_fn, x, y, _, lam = problem
    n_probes, p = 8, lam.numel()
    grid, density = hessian_spectral_density(
        model, loss_fn, x, y, n_probes=n_probes, lanczos_steps=30
    )
    assert grid.shape == density.shape and torch.all(density >= 0)
    step = float(grid[1] - grid[0])
    assert float(density.sum()) * step == pytest.approx(1.0, abs=1e-3)
    # the mean of the density is the mean of v^T H v over unit probes v: unbiased for
    # tr(H)/P with variance 2 (tr H^2 - tr(H)^2/P) / (P (P + 2)) per probe
    mean = float((grid * density).sum()) * step
    var = 2 * float((lam**2).sum() - lam.sum() ** 2 / p) / (p * (p + 2))
    assert abs(mean - float(lam.mean())) < 4 * math.sqrt(var / n_probes)
    # Lanczos finds the extreme eigenvalues: mass sits at them, none beyond them
    sigma = 0.01 * float(lam[-1] - lam[0])  # the default width, up to Ritz-value error
    for edge in (lam[0], lam[-1]):
        near = (grid - edge).abs() < 3 * sigma
        assert float(density[near].sum()) * step > 0.1 / p
    outside = (grid < lam[0] - 6 * sigma) | (grid > lam[-1] + 6 * sigma)
    assert float(density[outside].sum()) * step < 1e-6


def test_spectral_density_on_a_given_grid(problem):
    model, loss_fn, x, y, _, lam = problem
    grid = torch.linspace(float(lam[0]) - 0.1, float(lam[-1]) + 0.1, 300, dtype=torch.float64)
    g, d = hessian_spectral_density(
        model, loss_fn, x, y, n_probes=2, lanczos_steps=20, grid=grid, sigma=0.02
    )
    assert torch.equal(g, grid)
    assert float(d.sum()) * float(grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-3)


def test_estimates_are_seeded_and_spare_the_global_rng(problem):
    model, loss_fn, x, y, _, _ = problem
    state = torch.get_rng_state()
    d1 = hessian_spectral_density(model, loss_fn, x, y, n_probes=2, lanczos_steps=10, seed=4)
    t1 = hessian_trace(model, loss_fn, x, y, n_samples=10, seed=4)
    e1 = top_hessian_eigenvalues(model, loss_fn, x, y, k=2, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    d2 = hessian_spectral_density(model, loss_fn, x, y, n_probes=2, lanczos_steps=10, seed=4)
    assert torch.equal(d1[1], d2[1])
    assert t1 == hessian_trace(model, loss_fn, x, y, n_samples=10, seed=4)
    assert torch.equal(e1, top_hessian_eigenvalues(model, loss_fn, x, y, k=2, seed=4))


def test_curvature_probes_leave_model_untouched():
    model, loss_fn, x, y = tiny_classifier("tanh")
    loss_fn(model(x), y).backward()
    model.train()
    before = snapshot(model)
    top_hessian_eigenvalues(model, loss_fn, x, y, k=2)
    hessian_trace(model, loss_fn, x, y, n_samples=4)
    hessian_spectral_density(model, loss_fn, x, y, n_probes=1, lanczos_steps=5)
    assert_untouched(model, before)


def test_curvature_probes_reject_bad_input():
    model, loss_fn, x, y = tiny_classifier("tanh")  # 4-8-3: 67 parameters
    with pytest.raises(DlprobeError, match="which must be one of"):
        top_hessian_eigenvalues(model, loss_fn, x, y, which="BE")
    with pytest.raises(DlprobeError, match="k must be an int >= 1"):
        top_hessian_eigenvalues(model, loss_fn, x, y, k=0)
    with pytest.raises(DlprobeError, match="smaller than the number of parameters"):
        top_hessian_eigenvalues(model, loss_fn, x, y, k=67)
    with pytest.raises(DlprobeError, match="n_samples must be an int >= 2"):
        hessian_trace(model, loss_fn, x, y, n_samples=1)
    with pytest.raises(DlprobeError, match="same number of examples"):
        hessian_trace(model, loss_fn, x, y[:3])
    with pytest.raises(DlprobeError, match="n_probes"):
        hessian_spectral_density(model, loss_fn, x, y, n_probes=0)
    with pytest.raises(DlprobeError, match="sigma"):
        hessian_spectral_density(model, loss_fn, x, y, sigma=-1.0)
    with pytest.raises(DlprobeError, match="grid"):
        hessian_spectral_density(model, loss_fn, x, y, grid=torch.zeros(2, 2))

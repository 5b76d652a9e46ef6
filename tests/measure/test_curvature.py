"""HVP-based curvature estimates against the exact float64 spectrum of a 283-parameter MLP."""

import math

import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier

from dlprobe import DlprobeError
from dlprobe.measure._functional import Objective, eval_mode
from dlprobe.measure.curvature import (
    hessian_spectral_density,
    hessian_trace,
    lanczos_quadrature,
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


LAYER = ["3.weight", "3.bias"]  # the 16 -> 10 layer: 170 parameters


def _block(model, h, names):
    """Rows/columns of the full Hessian that belong to the named parameters."""
    index, i = [], 0
    for name, p in model.named_parameters():
        if name in names:
            index.extend(range(i, i + p.numel()))
        i += p.numel()
    index = torch.tensor(index)
    return h[index][:, index]


def test_parameter_block_spectra_match_the_block_of_the_exact_hessian(problem):
    model, loss_fn, x, y, h, _ = problem
    assert {n for n, _ in model.named_parameters()} >= set(LAYER)
    block = _block(model, h, LAYER)  # (170, 170)
    lam = torch.linalg.eigvalsh(block)
    torch.testing.assert_close(
        hessian(model, loss_fn, x, y, params=LAYER), block, rtol=1e-10, atol=1e-12
    )
    top = top_hessian_eigenvalues(model, loss_fn, x, y, k=3, params=LAYER)
    torch.testing.assert_close(top, lam.flip(0)[:3], rtol=1e-6, atol=0)
    est = hessian_trace(model, loss_fn, x, y, n_samples=400, params=LAYER, seed=2)
    assert abs(est.estimate - float(lam.sum())) < 4 * est.stderr
    grid, density = hessian_spectral_density(
        model, loss_fn, x, y, n_probes=1, lanczos_steps=170, params=LAYER
    )
    # a full Lanczos run from one vector: the density's mean is v^T H v / |v|^2 for that
    # vector, whose spread around tr/P is far below the spectrum's width
    step = float(grid[1] - grid[0])
    assert float(density.sum()) * step == pytest.approx(1.0, abs=1e-3)
    assert grid.min() < lam[0] and grid.max() > lam[-1]
    mean = float((grid * density).sum()) * step
    assert abs(mean - float(lam.mean())) < 0.1 * float(lam[-1] - lam[0])


def test_eigenvectors_on_request(problem):
    model, loss_fn, x, y, h, lam = problem
    values, vectors = top_hessian_eigenvalues(
        model, loss_fn, x, y, k=3, which="SA", return_eigenvectors=True
    )
    assert vectors.shape == (283, 3) and vectors.dtype == torch.float64
    torch.testing.assert_close(values, lam[:3], rtol=1e-6, atol=0)
    # H v = lambda v and unit norm, against the exact Hessian
    torch.testing.assert_close(h @ vectors, vectors * values, rtol=0, atol=1e-8)
    torch.testing.assert_close(vectors.norm(dim=0), torch.ones(3, dtype=torch.float64))


def test_tolerance_iterations_and_precision(problem):
    model, loss_fn, x, y, _, lam = problem
    loose = top_hessian_eigenvalues(model, loss_fn, x, y, tol=1e-3)
    assert float(loose[0]) == pytest.approx(float(lam[-1]), rel=1e-3)
    with pytest.raises(DlprobeError, match="within maxiter=1 restarts"):
        top_hessian_eigenvalues(model, loss_fn, x, y, k=6, which="SA", maxiter=1)
    # float32 products: the default tolerance sqrt(eps) stops above float32 round-off
    f32 = top_hessian_eigenvalues(model, loss_fn, x, y, k=2, dtype=torch.float32)
    torch.testing.assert_close(f32, lam.flip(0)[:2], rtol=1e-4, atol=0)
    t32 = hessian_trace(model, loss_fn, x, y, n_samples=10, seed=3, dtype=torch.float32)
    t64 = hessian_trace(model, loss_fn, x, y, n_samples=10, seed=3)
    assert t32.estimate == pytest.approx(t64.estimate, rel=1e-4)


def test_trace_does_not_depend_on_probes_per_batch(problem):
    model, loss_fn, x, y, _, _ = problem
    estimates = [
        hessian_trace(model, loss_fn, x, y, n_samples=7, probes_per_batch=m).estimate
        for m in (1, 3, None)
    ]
    assert estimates == pytest.approx([estimates[0]] * 3, rel=1e-12)


@pytest.mark.parametrize("steps", [1, 4, 12])
def test_lanczos_quadrature_matches_the_moments_of_the_exact_hessian(problem, steps):
    """Gauss quadrature with m nodes is exact for polynomials of degree < 2m:
    sum_i w_i t_i^j = v^T H^j v / |v|^2, here against powers of the exact Hessian."""
    model, loss_fn, x, y, h, lam = problem
    v = torch.randn(283, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with eval_mode(model):
        op = Objective(model, loss_fn, x, y, dtype=torch.float64).hessian_operator()
        nodes, weights = lanczos_quadrature(op, v, steps)
    assert nodes.shape == weights.shape == (steps,)
    u = v / v.norm()
    hu = u.clone()
    for j in range(2 * steps):
        moment = float(u @ hu) if j else 1.0  # u^T H^j u
        scale = float(lam.abs().max()) ** j  # |u^T H^j u| <= ||H||^j
        assert float((weights * nodes**j).sum()) == pytest.approx(moment, abs=1e-9 * scale)
        hu = h @ hu


def test_lanczos_stops_on_an_invariant_subspace():
    """H = c I: the Krylov space of any vector is one-dimensional."""
    op = 2.5 * torch.eye(6, dtype=torch.float64)
    nodes, weights = lanczos_quadrature(op, torch.ones(6, dtype=torch.float64), 5)
    torch.testing.assert_close(nodes, torch.tensor([2.5], dtype=torch.float64))
    torch.testing.assert_close(weights, torch.tensor([1.0], dtype=torch.float64))


def _exact_ggn(model, loss_fn, x, y):
    """J^T H_out J averaged over examples, from autograd Jacobians and output Hessians."""
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def outputs(t):
        parts = dict(
            zip(
                names,
                (
                    c.reshape(s)
                    for c, s in zip(t.split([s.numel() for s in shapes]), shapes, strict=True)
                ),
                strict=True,
            )
        )
        return torch.func.functional_call(model, parts, (x,))  # (n, C)

    with eval_mode(model):
        jac = torch.autograd.functional.jacobian(outputs, theta)  # (n, C, P)
        out = outputs(theta).detach()
    ggn = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64)
    for i in range(len(x)):
        target = y[i : i + 1]
        h_out = torch.autograd.functional.hessian(
            lambda o, target=target: loss_fn(o[None], target), out[i]
        )  # (C, C)
        ggn += jac[i].T @ h_out @ jac[i]
    return ggn / len(x)


def test_generalized_gauss_newton_against_jacobians():
    model, loss_fn, x, y = tiny_classifier("tanh", widths=(4, 6, 3), n=20)
    model, x = model.double(), x.double()
    ggn = _exact_ggn(model, loss_fn, x, y)
    lam = torch.linalg.eigvalsh(ggn)
    assert lam[0] > -1e-12  # positive semi-definite for cross-entropy
    top = top_hessian_eigenvalues(model, loss_fn, x, y, k=3, curvature="ggn")
    torch.testing.assert_close(top, lam.flip(0)[:3], rtol=1e-8, atol=0)
    split = [(x[:8], y[:8]), (x[8:], y[8:])]
    est = hessian_trace(model, loss_fn, split, n_samples=300, curvature="ggn", seed=4)
    assert abs(est.estimate - float(lam.sum())) < 4 * est.stderr
    grid, density = hessian_spectral_density(model, loss_fn, x, y, n_probes=2, curvature="ggn")
    assert float(grid[density > 1e-6 * density.max()].min()) > -0.05 * float(lam[-1])
    with pytest.raises(DlprobeError, match="curvature must be one of hessian, ggn"):
        hessian_trace(model, loss_fn, x, y, curvature="fisher")

"""The critical-point search against functions whose critical points are known, and
against finite differences of a tiny network's loss."""

import math
import subprocess
import sys

import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_regression

from dlprobe import DlprobeError
from dlprobe.measure._functional import flat_params
from dlprobe.measure.critical_points import (
    find_critical_points,
    model_critical_points,
    zero_tolerance,
)
from dlprobe.measure.gradient import gradient_norm


def double_well(t):
    """(t0² - 1)² + t1²: minima at (±1, 0), a saddle at (0, 0)."""
    return (t[0] ** 2 - 1) ** 2 + t[1] ** 2


def double_well_grad(t0: float, t1: float) -> float:
    """|∇| of ``double_well`` written out by hand."""
    return math.hypot(4 * t0 * (t0**2 - 1), 2 * t1)


def test_finds_the_saddle_and_both_minima_of_a_double_well():
    start = torch.tensor([[0.1, 0.2], [0.8, -0.1], [-1.3, 0.4]], dtype=torch.float64)
    found = find_critical_points(double_well, start, grad_tol=1e-12, max_iter=30)
    expected = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(found.params, expected, atol=1e-10, rtol=0)
    assert found.converged.tolist() == [True, True, True]
    for (t0, t1), norm in zip(found.params.tolist(), found.grad_norm.tolist(), strict=True):
        assert norm == pytest.approx(double_well_grad(t0, t1), rel=1e-6, abs=1e-18)
        assert norm < 1e-12
    # Newton converges in a handful of steps; the history starts at the start's |g|
    assert found.iterations.max() <= 8
    first = [double_well_grad(*row) for row in start.tolist()]
    torch.testing.assert_close(found.grad_norm_history[:, 0], torch.tensor(first).double())
    assert found.grad_norm_history.shape == (3, 31)
    assert (found.grad_norm_history.diff(dim=1) <= 0).all()  # |g| never goes up


def test_a_slope_without_critical_point_is_not_converged():
    """t0 + t1²: |g| >= 1 everywhere; the search gives up and says so."""
    start = torch.tensor([[0.3, -2.0]], dtype=torch.float64)
    found = find_critical_points(lambda t: t[0] + t[1] ** 2, start, max_iter=60)
    assert found.converged.tolist() == [False]
    assert found.grad_norm.item() == pytest.approx(1.0)
    assert found.iterations.item() < 60  # stopped once the damping exploded


def test_non_finite_starts_are_left_alone_and_the_others_still_searched():
    start = torch.tensor([[float("nan"), 0.0], [0.8, -0.1]], dtype=torch.float64)
    found = find_critical_points(double_well, start, grad_tol=1e-12)
    assert found.converged.tolist() == [False, True]
    assert math.isnan(found.grad_norm[0]) and found.iterations[0] == 0
    assert math.isnan(found.params[0, 0]) and found.params[0, 1] == 0


def _tiny_net_starts(model, k: int = 3) -> torch.Tensor:
    """Start points: the model's parameters shrunk towards 0 by a different factor each."""
    theta = flat_params(model, torch.float64)
    return torch.stack([theta * s for s in (0.05, 0.1, 0.2)[:k]])  # (k, P)


def test_tiny_network_critical_points_check_out_by_finite_differences():
    model, loss_fn, x, y = tiny_regression("tanh", widths=(1, 3, 1), n=8)
    before = snapshot(model)
    found = model_critical_points(model, loss_fn, x, y, _tiny_net_starts(model), grad_tol=1e-10)
    assert_untouched(model, before)
    assert found.converged.any()
    m64, x64, y64 = model.double(), x.double(), y.double()
    for theta, norm, ok in zip(found.params, found.grad_norm, found.converged, strict=True):
        torch.nn.utils.vector_to_parameters(theta, m64.parameters())
        # the reported |g| is the gradient norm of the model at that point
        assert gradient_norm(m64, loss_fn, x64, y64) == pytest.approx(norm.item(), rel=1e-6)
        if ok:  # central differences of the loss, one parameter at a time: all ~0
            h, fd = 1e-5, []
            for i in range(len(theta)):
                e = torch.zeros_like(theta)
                e[i] = h
                torch.nn.utils.vector_to_parameters(theta + e, m64.parameters())
                up = loss_fn(m64(x64), y64).item()
                torch.nn.utils.vector_to_parameters(theta - e, m64.parameters())
                fd.append((up - loss_fn(m64(x64), y64).item()) / (2 * h))
            assert max(abs(v) for v in fd) < 1e-8


def test_population_search_equals_one_search_per_model():
    model, loss_fn, x, y = tiny_regression("tanh", widths=(1, 3, 1), n=8)
    starts = _tiny_net_starts(model)
    together = model_critical_points(model, loss_fn, x, y, starts, max_iter=20)
    for k in range(len(starts)):
        alone = model_critical_points(model, loss_fn, x, y, starts[k : k + 1], max_iter=20)
        torch.testing.assert_close(alone.params[0], together.params[k], atol=1e-9, rtol=0)
        assert alone.converged[0] == together.converged[k]
        assert alone.iterations[0] == together.iterations[k]


def test_bad_input_is_refused_with_one_line():
    model, loss_fn, x, y = tiny_regression("tanh", widths=(1, 3, 1), n=8)
    with pytest.raises(DlprobeError, match=r"start must be \(K, 10\)"):
        model_critical_points(model, loss_fn, x, y, torch.zeros(2, 9))
    with pytest.raises(DlprobeError, match="non-empty"):
        find_critical_points(double_well, torch.zeros(2))
    with pytest.raises(DlprobeError, match="grad_tol"):
        find_critical_points(double_well, torch.zeros(1, 2), grad_tol=0)
    with pytest.raises(DlprobeError, match="max_iter"):
        find_critical_points(double_well, torch.zeros(1, 2), max_iter=-1)


def test_zero_tolerance_scales_with_the_gradient_norm_above_round_off():
    lam = torch.tensor([[-2.0, 1e-9, 3.0], [-2.0, 1e-9, 3.0]], dtype=torch.float64)
    tol = zero_tolerance(lam, torch.tensor([1e-6, 1e-4]), per_grad=2.0)
    torch.testing.assert_close(tol, torch.tensor([2e-6, 2e-4], dtype=torch.float64))
    # at |g| = 0 only the eigensolver's round-off is left: P * eps * max|λ|
    floor = zero_tolerance(lam[:1], torch.zeros(1), per_grad=2.0)
    assert floor.item() == pytest.approx(3 * torch.finfo(torch.float64).eps * 3.0)
    with pytest.raises(DlprobeError, match=r"\(K, P\)"):
        zero_tolerance(lam[0], torch.zeros(1))
    with pytest.raises(DlprobeError, match="per_grad"):
        zero_tolerance(lam, torch.zeros(2), per_grad=-1.0)


def test_the_search_prints_no_torch_jit_warning():
    """jacfwd's first use in a process warns that torch.jit.script is deprecated, which a
    user can do nothing about: the search silences it (a fresh process, warnings as errors)."""
    code = (
        "import torch\n"
        "from dlprobe.measure.critical_points import find_critical_points\n"
        "f = lambda t: ((t**2 - 1) ** 2).sum()\n"
        "find_critical_points(f, torch.tensor([[0.5], [2.0]]), max_iter=3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "jit" not in done.stderr

import math

import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier, tiny_regression
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure._functional import flat_loss_fn, flat_params
from dlprobe.measure.sharpness import sharpness, valley_width

X, Y = torch.zeros(3, 1), torch.zeros(3)  # the quadratic ignores its data


class Quadratic(nn.Module):
    """``0.5 theta^T A theta + c`` (the same value for every example): known Hessian A."""

    def __init__(self, a: torch.Tensor, theta: torch.Tensor, c: float):
        super().__init__()
        self.theta = nn.Parameter(theta.clone().double())
        self.register_buffer("a", a.double())
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.theta @ self.a @ self.theta + self.c).expand(x.shape[0])


def mean_loss(output, target):
    return output.mean()


def loss_at(model):
    return model(X).mean().item()


def rotated(eigenvalues, seed=0):
    """A = Q diag(eigenvalues) Q^T with a seeded random orthogonal Q."""
    gen = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T, q


@pytest.mark.parametrize(
    ("eigenvalues", "norm"), [([5.0, 2.0, 1.0, 0.5, 0.0], 5.0), ([3.0, -7.0, 1.0, 0.0], 7.0)]
)
def test_hessian_method_closed_form(eigenvalues, norm):
    a, _ = rotated(eigenvalues)
    theta = torch.linspace(-1, 1, len(eigenvalues))
    model = Quadratic(a, theta, c=0.3)
    base = loss_at(model)
    eps = 1e-4
    r = sharpness(model, mean_loss, X, Y, epsilon=eps, method="hessian")
    assert r.hessian_norm == pytest.approx(norm, rel=1e-10)
    assert r.value == pytest.approx(norm * eps**2 / (2 * (1 + base)), rel=1e-8)
    assert r.base_loss == pytest.approx(base, rel=1e-14)
    assert r.max_loss == pytest.approx(base + norm * eps**2 / 2, rel=1e-14)


def test_hessian_method_matches_exact_hessian_of_mlp():
    model, loss_fn, x, y = tiny_classifier("tanh")
    theta = flat_params(model, torch.float64)
    f = flat_loss_fn(model, loss_fn, x, y, torch.float64)
    h = torch.autograd.functional.hessian(f, theta)  # (P, P) brute force
    norm = torch.linalg.eigvalsh(h).abs().max().item()
    r = sharpness(model, loss_fn, x, y, epsilon=1e-4, method="hessian")
    assert r.hessian_norm == pytest.approx(norm, rel=1e-8)
    assert r.value == pytest.approx(norm * 1e-8 / (2 * (1 + f(theta).item())), rel=1e-8)


@pytest.mark.parametrize("eps", [1e-4, 1e-2])
def test_ball_method_is_half_lambda_max_eps_squared_at_minimum(eps):
    a, _ = rotated([5.0, 2.0, 1.0, 0.5, 0.0])
    model = Quadratic(a, torch.zeros(5), c=0.3)
    r = sharpness(model, mean_loss, X, Y, epsilon=eps, method="ball", steps=100)
    assert r.value == pytest.approx(0.5 * 5.0 * eps**2, rel=1e-6)
    assert r.max_loss - r.base_loss == pytest.approx(r.value, rel=1e-12)


@pytest.mark.parametrize("theta_zero", [True, False])
@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_keskar_method_box_corner_for_diagonal_hessian(theta_zero, eps):
    diag = torch.tensor([4.0, 0.0, 1.5, 0.25, 2.0], dtype=torch.float64)
    theta = torch.zeros(5) if theta_zero else torch.tensor([0.5, -1.0, -2.0, 0.0, 3.0])
    model = Quadratic(torch.diag(diag), theta, c=0.2)
    base = loss_at(model)
    t = theta.double().abs()
    bound = eps * (t + 1)
    # The convex quadratic's box maximum sits at the corner z_i = sign(theta_i) * bound_i.
    increase = 0.5 * (diag * ((t + bound) ** 2 - t**2)).sum().item()
    if theta_zero:
        assert increase == pytest.approx(0.5 * (diag * bound**2).sum().item(), rel=1e-12)
    r = sharpness(model, mean_loss, X, Y, epsilon=eps, method="keskar")
    assert r.value == pytest.approx(increase / (1 + base), rel=1e-8)
    assert r.method == "keskar" and r.epsilon == eps and r.hessian_norm is None


def test_ball_and_hessian_agree_at_minimum_of_quadratic_with_zero_loss():
    # Near theta = 0 of a quadratic, ball and hessian estimates coincide up to 1 + L.
    a, _ = rotated([3.0, 1.0, 0.2])
    model = Quadratic(a, torch.zeros(3), c=0.0)
    ball = sharpness(model, mean_loss, X, Y, epsilon=1e-3, method="ball")
    hess = sharpness(model, mean_loss, X, Y, epsilon=1e-3, method="hessian")
    assert ball.value == pytest.approx(hess.value, rel=1e-6)


def test_valley_width_along_eigenvectors_at_minimum():
    eigenvalues = [5.0, 2.0, 0.5]
    a, q = rotated(eigenvalues)
    model = Quadratic(a, torch.zeros(3), c=0.1)
    h = 0.05
    w = valley_width(model, mean_loss, X, Y, height=h, directions=3.0 * q.T, max_distance=5.0)
    expected = torch.tensor(
        [2 * math.sqrt(2 * h / lam) for lam in eigenvalues], dtype=torch.float64
    )
    torch.testing.assert_close(w.widths, expected, rtol=1e-9, atol=0)
    assert w.reached.all() and w.mean == pytest.approx(expected.mean().item(), rel=1e-9)


def test_valley_width_random_directions_off_minimum():
    a, _ = rotated([5.0, 2.0, 0.5, 1.0])
    theta = torch.tensor([0.1, -0.2, 0.05, 0.0])
    model = Quadratic(a, theta, c=0.0)
    h = 0.3
    w = valley_width(model, mean_loss, X, Y, height=h, n_directions=6, max_distance=10.0)
    d = w.directions  # (6, 4) unit rows
    torch.testing.assert_close(d.norm(dim=1), torch.ones(6, dtype=torch.float64))
    # rise(t) = g t + lam t^2 / 2 along d, so t_+ + t_- = 2 sqrt(g^2 + 2 lam h) / lam.
    g = d @ (a @ theta.double())
    lam = torch.einsum("mp,pq,mq->m", d, a, d)
    torch.testing.assert_close(
        w.widths, 2 * torch.sqrt(g**2 + 2 * lam * h) / lam, rtol=1e-9, atol=0
    )
    t_plus = (-g + torch.sqrt(g**2 + 2 * lam * h)) / lam
    torch.testing.assert_close(w.distances[:, 0], t_plus, rtol=1e-9, atol=0)
    again = valley_width(model, mean_loss, X, Y, height=h, n_directions=6, max_distance=10.0)
    assert torch.equal(again.widths, w.widths)


def test_valley_width_flags_flat_direction():
    model = Quadratic(torch.diag(torch.tensor([1.0, 0.0])), torch.zeros(2), c=0.0)
    w = valley_width(model, mean_loss, X, Y, height=0.1, directions=torch.eye(2), max_distance=2.0)
    assert w.reached.tolist() == [[True, True], [False, False]]
    assert w.widths[0].item() == pytest.approx(2 * math.sqrt(0.2), rel=1e-9)
    assert math.isinf(w.widths[1].item()) and math.isinf(w.mean)


def test_model_untouched():
    model, loss_fn, x, y = tiny_classifier("relu")
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    for method in ["keskar", "ball", "hessian"]:
        r = sharpness(model, loss_fn, x, y, epsilon=1e-3, method=method, steps=5)
        assert r.value >= 0
    valley_width(model, loss_fn, x, y, height=0.1, n_directions=2, scan_points=8)
    assert_untouched(model, before)


def test_bad_input():
    model, loss_fn, x, y = tiny_regression()
    with pytest.raises(DlprobeError, match="valid: keskar, ball, hessian"):
        sharpness(model, loss_fn, x, y, method="sam")
    for eps in [0.0, -1e-4, math.inf]:
        with pytest.raises(DlprobeError, match="epsilon must be a positive"):
            sharpness(model, loss_fn, x, y, epsilon=eps)
    with pytest.raises(DlprobeError, match="steps must be a positive int"):
        sharpness(model, loss_fn, x, y, steps=0)
    with pytest.raises(DlprobeError, match="same number of examples"):
        sharpness(model, loss_fn, x, y[:-1])
    with pytest.raises(DlprobeError, match="height must be a positive"):
        valley_width(model, loss_fn, x, y, height=0.0)
    with pytest.raises(DlprobeError, match="max_distance must be a positive"):
        valley_width(model, loss_fn, x, y, height=0.1, max_distance=-1.0)
    with pytest.raises(DlprobeError, match=r"shape \(m >= 1, 53\)"):
        valley_width(model, loss_fn, x, y, height=0.1, directions=torch.ones(2, 5))
    with pytest.raises(DlprobeError, match="non-zero"):
        valley_width(model, loss_fn, x, y, height=0.1, directions=torch.zeros(1, 53))
    with pytest.raises(DlprobeError, match="n_directions must be a positive int"):
        valley_width(model, loss_fn, x, y, height=0.1, n_directions=0)

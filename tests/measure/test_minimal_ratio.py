"""Minimal ratio, both definitions, on analytic losses with known answers."""

import math

import numpy as np
import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_regression
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.hessian import hessian_eigenvalues
from dlprobe.measure.minimal_ratio import (
    MinimalRatio,
    minimal_ratio,
    minimal_ratio_by_sampling,
)


class Point(nn.Module):
    """A 'model' whose output is its parameter theta in R^2, repeated for each input."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return self.theta.expand(x.shape[0], 2)


def quadratic(a: float, b: float):
    """Loss a * theta1^2 + b * theta2^2: Hessian diag(2a, 2b) at every theta."""

    def loss_fn(out, target):
        return (a * out[:, 0] ** 2 + b * out[:, 1] ** 2).mean()

    return loss_fn


X, Y = torch.zeros(3, 1), torch.zeros(3, 1)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(1.0, 1.0, 1.0), (1.0, -1.0, 0.5), (-1.0, -2.0, 0.0)],
    ids=["bowl", "saddle", "maximum"],
)
def test_spectral_definition_on_quadratics(a, b, expected):
    lam = hessian_eigenvalues(Point(), quadratic(a, b), X, Y)
    torch.testing.assert_close(lam, torch.tensor(sorted([2 * a, 2 * b]), dtype=torch.float64))
    ratio = minimal_ratio(lam)
    assert ratio.positive == expected
    assert ratio.zero == 0 and ratio.n == 2


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    # P(a u1^2 + b u2^2 > 0) for u uniform on the circle: (2/pi) atan(sqrt(a/|b|)) if b < 0
    [(1.0, 1.0, 1.0), (1.0, -1.0, 0.5), (1.0, -3.0, 1 / 3)],
    ids=["bowl", "saddle", "steep-saddle"],
)
def test_sampling_definition_on_quadratics(a, b, expected):
    n = 4000
    ratio = minimal_ratio_by_sampling(Point(), quadratic(a, b), X, Y, n_samples=n)
    assert ratio.n_samples == n and ratio.radius == 1e-3
    assert ratio.higher + ratio.lower + ratio.ties == pytest.approx(1.0)
    if expected == 1.0:
        assert ratio.higher == 1.0  # every direction goes up: no sampling error at all
    else:
        # 4 binomial standard errors of the expected fraction
        assert abs(ratio.higher - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_sampling_counts_ties_in_flat_directions():
    """Loss theta1^2 only: the theta2 direction is flat, theta1 never exactly 0 -> no ties,
    but a loss that ignores theta entirely ties everywhere."""
    ratio = minimal_ratio_by_sampling(Point(), quadratic(1.0, 0.0), X, Y, n_samples=200)
    assert ratio.higher == 1.0
    flat = minimal_ratio_by_sampling(Point(), quadratic(0.0, 0.0), X, Y, n_samples=200)
    assert flat.ties == 1.0 and flat.higher == 0.0 and flat.lower == 0.0


def test_sampling_is_seeded_and_spares_the_global_rng():
    model, loss_fn, x, y = tiny_regression()
    state = torch.get_rng_state()
    a = minimal_ratio_by_sampling(model, loss_fn, x, y, n_samples=300, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    b = minimal_ratio_by_sampling(model, loss_fn, x, y, n_samples=300, seed=3)
    assert a == b
    # a random-init model is not at a critical point: the gradient term dominates
    assert 0.3 < a.higher < 0.7 and a.stderr == pytest.approx(math.sqrt(a.higher * a.lower / 300))


def test_minimal_ratio_counts_with_tolerance():
    lam = torch.tensor([-1.0, -1e-12, 0.0, 1e-13, 2.0, 3.0], dtype=torch.float64)
    r = minimal_ratio(lam)  # default tol = 1e-9 * 3
    assert r == MinimalRatio(positive=2 / 6, negative=1 / 6, zero=3 / 6, tol=r.tol, n=6)
    assert r.tol == pytest.approx(3e-9)
    assert minimal_ratio(lam.numpy(), tol=0.0).positive == 3 / 6  # sign only
    assert minimal_ratio(lam, tol=2.5).positive == 1 / 6
    rows = minimal_ratio(np.stack([lam.numpy(), 10 * lam.numpy()]))
    assert isinstance(rows, list) and len(rows) == 2
    assert rows[1].tol == pytest.approx(3e-8) and rows[1].positive == r.positive
    assert minimal_ratio(torch.zeros(4)).zero == 1.0


def test_sampling_leaves_model_untouched():
    model, loss_fn, x, y = tiny_regression()
    loss_fn(model(x), y).backward()
    model.train()
    before = snapshot(model)
    minimal_ratio_by_sampling(model, loss_fn, x, y, n_samples=50)
    assert_untouched(model, before)


def test_minimal_ratio_rejects_bad_input():
    with pytest.raises(DlprobeError, match="torch.Tensor or numpy array"):
        minimal_ratio([1.0, 2.0])
    with pytest.raises(DlprobeError, match=r"shape \(P,\) or \(K, P\)"):
        minimal_ratio(torch.zeros(2, 2, 2))
    with pytest.raises(DlprobeError, match="non-empty"):
        minimal_ratio(torch.zeros(0))
    with pytest.raises(DlprobeError, match="NaN"):
        minimal_ratio(torch.tensor([1.0, float("nan")]))
    with pytest.raises(DlprobeError, match="tol must be"):
        minimal_ratio(torch.ones(3), tol=-1.0)
    model, loss_fn, x, y = tiny_regression()
    with pytest.raises(DlprobeError, match="n_samples"):
        minimal_ratio_by_sampling(model, loss_fn, x, y, n_samples=0)
    with pytest.raises(DlprobeError, match="radius"):
        minimal_ratio_by_sampling(model, loss_fn, x, y, radius=-1e-3)
    with pytest.raises(DlprobeError, match="same number of examples"):
        minimal_ratio_by_sampling(model, loss_fn, x, y[:3])
    with pytest.raises(DlprobeError, match="not finite"):
        minimal_ratio_by_sampling(model, lambda out, t: (out * float("inf")).mean(), x, y)

"""Simulated annealing of many chains (dlprobe.train.annealing)."""

import math

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.train.annealing import anneal, temperatures


def _quadratic(x):  # (n, P) -> (n,)
    return 0.5 * (x**2).sum(1)


def test_chains_follow_the_documented_metropolis_rule():
    """Brute force, one chain and one step at a time in plain Python: the same generator's
    draws (a (n, P) normal, then a (n,) uniform per step), accept when the loss does not
    rise or u < exp(-ΔL / T_t), T_t = t_start (t_end / t_start)^(t / (steps - 1))."""
    x0 = torch.tensor([[2.0, -1.0], [0.3, 0.1], [-3.0, 4.0]], dtype=torch.float64)
    t0, t1, step, steps = 2.0, 0.01, 0.7, 30
    out = anneal(_quadratic, x0, t0, t1, step, steps, windows=3, seed=7)
    gen = torch.Generator().manual_seed(7)
    x = [row.clone() for row in x0]
    taken = [[0] * 3 for _ in range(3)]  # [window][chain]
    for t in range(steps):
        z = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        u = torch.rand(3, generator=gen, dtype=torch.float64)
        temp = t0 * (t1 / t0) ** (t / (steps - 1))
        for k in range(3):
            cand = x[k] + step * z[k]
            rise = float(0.5 * (cand**2).sum() - 0.5 * (x[k] ** 2).sum())
            if rise <= 0 or float(u[k]) < math.exp(-rise / temp):
                x[k], taken[t // 10][k] = cand, taken[t // 10][k] + 1
    torch.testing.assert_close(out.x, torch.stack(x))
    torch.testing.assert_close(out.loss, _quadratic(torch.stack(x)))
    assert out.window_end == [10, 20, 30]
    torch.testing.assert_close(out.acceptance, torch.tensor(taken) / 10)
    torch.testing.assert_close(out.window_loss[-1], out.loss)


def test_at_a_fixed_temperature_chains_sample_the_boltzmann_distribution():
    """Metropolis at constant T samples exp(-L/T): for L = x²/2 that is N(0, T)."""
    temp = 0.5
    x0 = torch.zeros(4000, 1, dtype=torch.float64)
    out = anneal(_quadratic, x0, temp, temp, step=1.0, steps=200, seed=1)
    assert out.x.var().item() == pytest.approx(temp, rel=0.08)
    assert abs(out.x.mean().item()) < 0.05


def test_proposals_with_a_nan_loss_are_never_taken():
    def loss(x):  # NaN right of 0: chains starting left can never cross
        return torch.where(x[:, 0] > 0, torch.nan, x[:, 0] ** 2)

    out = anneal(loss, torch.full((200, 1), -0.1), 10.0, 1.0, step=0.5, steps=100)
    assert (out.x <= 0).all() and torch.isfinite(out.loss).all()
    assert 0 < out.acceptance.mean() < 1


def test_schedule_is_geometric_from_start_to_end():
    t = temperatures(10.0, 0.01, 4)
    torch.testing.assert_close(t, torch.tensor([10.0, 1.0, 0.1, 0.01], dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x0": torch.zeros(3)}, "chains, parameters"),
        ({"t_end": 0.0}, "> 0"),
        ({"step": -1.0}, "> 0"),
        ({"windows": 11}, "windows"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    args = {"x0": torch.zeros(2, 3), "t_start": 1.0, "t_end": 0.1, "step": 0.1, "steps": 10}
    with pytest.raises(DlprobeError, match=match):
        anneal(_quadratic, **{**args, **kwargs})

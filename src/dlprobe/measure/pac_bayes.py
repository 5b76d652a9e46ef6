"""A PAC-Bayes flatness probe: how much Gaussian weight noise the training loss tolerates.

Following Jiang et al. (2019, "Fantastic generalization measures and where to find them",
their PAC-Bayes measures), the posterior N(w, sigma^2 I) around the trained weights w is
given the largest sigma whose expected loss rise stays within a set amount:

    sigma = max { s : E_{z ~ N(0, I)} [L(w + s z)] - L(w) <= max_rise },

searched by bisection on log s inside ``sigma_range``. The expectation is a Monte Carlo
mean over ``samples`` seeded draws z_1..z_S, the same draws for every s (common random
numbers), so the estimate is a deterministic function of s and the search is exact for
it. From sigma follow Jiang et al.'s flatness measure ``1 / sigma^2`` and their
PAC-Bayes bound term with the prior N(w0, sigma^2 I) centred on the initial weights w0,

    bound = ||w - w0||_2^2 / (4 sigma^2) + ln(m / sigma) + 10,

with m the number of training examples (the KL divergence of the two Gaussians is
||w - w0||^2 / (2 sigma^2); Jiang et al. halve it and add their constants). A flat
minimum tolerates more noise: a larger sigma, a smaller flatness value and bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure._functional import LossFn, Objective, check_dtype, eval_mode


@dataclass(frozen=True)
class PacBayesFlatness:
    """The noise scale found and the measures that follow from it (module docstring).

    Attributes:
        sigma: the largest noise scale found whose expected loss rise is <= ``max_rise``
            (the lower end of the final bisection bracket).
        sigma_above: the upper end of the final bracket, where the rise exceeds
            ``max_rise`` (``inf`` when even ``sigma_range[1]`` stays within it).
        expected_rise: the Monte Carlo mean loss rise at ``sigma``.
        base_loss: L(w).
        flatness: ``1 / sigma^2``.
        distance: ``||w - w0||_2``.
        bound: ``distance^2 / (4 sigma^2) + ln(m / sigma) + 10``.
        within_range: False when the rise exceeds ``max_rise`` already at
            ``sigma_range[0]`` or never does up to ``sigma_range[1]`` (sigma is then that end).
        samples: the Monte Carlo draws z per noise scale.
    """

    sigma: float
    sigma_above: float
    expected_rise: float
    base_loss: float
    flatness: float
    distance: float
    bound: float
    within_range: bool
    samples: int


def pac_bayes_flatness(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    *,
    initial: torch.Tensor,
    n_train: int,
    max_rise: float = 0.1,
    samples: int = 16,
    sigma_range: tuple[float, float] = (1e-5, 10.0),
    bisection_steps: int = 30,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> PacBayesFlatness:
    """Largest Gaussian weight noise within a loss rise, and the PAC-Bayes measures from it.

    Args:
        model, loss_fn: the model and the loss ``loss_fn(model(x), y)``, a mean over the
            batch (any scalar: cross-entropy, or the 0-1 error as Jiang et al. use it).
        x, y: the examples the loss is measured on, as for ``dlprobe.measure.sharpness``.
        initial: (P,) the initial parameters w0 (``named_parameters`` order), the prior's
            centre.
        n_train: m, the number of training examples, in the bound's ``ln(m / sigma)``.
        max_rise: the largest expected loss rise allowed (> 0).
        samples: Monte Carlo draws z ~ N(0, I), drawn once from ``seed``
            (``torch.randn(samples, P)`` on the CPU, in float64) and reused at every scale.
        sigma_range: (low, high) where sigma is searched, 0 < low < high.
        bisection_steps: halvings of the bracket in log sigma.
        seed: seeds the draws.
        dtype: precision of the computation.

    Returns:
        ``PacBayesFlatness``. The model is evaluated in eval mode and left untouched.
    """
    low, high = _checked(max_rise, samples, sigma_range, bisection_steps, n_train)
    check_dtype(dtype)
    with eval_mode(model):
        objective = Objective(model, loss_fn, x, y, dtype=dtype)
        theta = objective.theta  # (P,)
        w0 = torch.as_tensor(initial).detach().reshape(-1)
        if w0.numel() != theta.numel():
            raise DlprobeError(
                f"initial must hold the model's {theta.numel()} parameters, got {w0.numel()}"
            )
        w0 = w0.to(device=theta.device, dtype=dtype)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(samples, theta.numel(), generator=gen, dtype=torch.float64)
        z = z.to(device=theta.device, dtype=dtype)  # (S, P)
        base = objective.loss(theta).item()

        def rise(sigma: float) -> float:
            return objective.losses(theta + sigma * z).mean().item() - base

        sigma, above, rise_at, within = _search(rise, low, high, max_rise, bisection_steps)
    distance = (theta - w0).norm().item()
    return PacBayesFlatness(
        sigma=sigma,
        sigma_above=above,
        expected_rise=rise_at,
        base_loss=base,
        flatness=1.0 / sigma**2,
        distance=distance,
        bound=distance**2 / (4 * sigma**2) + math.log(n_train / sigma) + 10,
        within_range=within,
        samples=samples,
    )


def _search(rise, low: float, high: float, max_rise: float, steps: int):
    """(sigma, sigma_above, rise at sigma, within range) by bisection on log sigma."""
    rise_low = rise(low)
    if not rise_low <= max_rise:  # NaN counts as too much
        return low, low, rise_low, False
    rise_high = rise(high)
    if rise_high <= max_rise:
        return high, math.inf, rise_high, False
    for _ in range(steps):
        mid = math.sqrt(low * high)
        rise_mid = rise(mid)
        if rise_mid <= max_rise:
            low, rise_low = mid, rise_mid
        else:
            high = mid
    return low, high, rise_low, True


def _checked(max_rise, samples, sigma_range, steps, n_train) -> tuple[float, float]:
    if not (isinstance(max_rise, (int, float)) and math.isfinite(max_rise) and max_rise > 0):
        raise DlprobeError(f"max_rise must be a positive finite number, got {max_rise!r}")
    for name, v in (("samples", samples), ("bisection_steps", steps), ("n_train", n_train)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DlprobeError(f"{name} must be a positive int, got {v!r}")
    try:
        low, high = (float(s) for s in sigma_range)
    except (TypeError, ValueError):
        raise DlprobeError(f"sigma_range must be (low, high), got {sigma_range!r}") from None
    if not (0 < low < high and math.isfinite(high)):
        raise DlprobeError(f"sigma_range must satisfy 0 < low < high < inf, got {sigma_range!r}")
    return low, high

"""Simulated annealing of many independent chains at once (Metropolis, geometric cooling).

Step t of ``steps`` proposes x' = x + N(0, step² I) for every chain and accepts it with
the Metropolis probability min(1, exp(-(L(x') - L(x)) / T_t)), the temperature falling
geometrically from ``t_start`` (first proposal) to ``t_end`` (last). A proposal whose loss
is NaN is never accepted. Only the loss is evaluated, never a gradient: one proposal costs
one loss evaluation per chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dlprobe import DlprobeError


@dataclass(frozen=True)
class Annealed:
    """Where the chains ended, and their record per window of the schedule."""

    x: torch.Tensor  # (n, P) final points
    loss: torch.Tensor  # (n,) their losses
    window_end: list[int]  # proposals made by the end of each window
    temperature: list[float]  # geometric mean of each window's temperatures
    acceptance: torch.Tensor  # (windows, n) share of each chain's proposals accepted
    window_loss: torch.Tensor  # (windows, n) each chain's loss at the window's end


def temperatures(t_start: float, t_end: float, steps: int) -> torch.Tensor:
    """(steps,) float64 geometric schedule from ``t_start`` to ``t_end``."""
    frac = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
    return t_start * (t_end / t_start) ** frac


@torch.no_grad()
def anneal(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    t_start: float,
    t_end: float,
    step: float,
    steps: int,
    windows: int = 1,
    seed: int = 0,
) -> Annealed:
    """Simulated annealing of n chains from the rows of ``x0``.

    Args:
        loss_fn: ``(n, P) -> (n,)`` loss of every chain's point.
        x0: (n, P) starting points.
        t_start, t_end: temperatures of the first and last proposal (loss units), > 0.
        step: std of the Gaussian proposal in every coordinate.
        steps: proposals per chain.
        windows: parts of the schedule to record acceptance and loss over (<= steps).
        seed: seed of the proposals and acceptance draws (a CPU generator).

    Returns:
        :class:`Annealed`.
    """
    if x0.ndim != 2:
        raise DlprobeError(f"x0 must be (chains, parameters), got shape {tuple(x0.shape)}")
    if min(t_start, t_end, step) <= 0:
        raise DlprobeError(f"temperatures and step must be > 0, got {t_start}, {t_end}, {step}")
    if not 1 <= windows <= steps:
        raise DlprobeError(f"windows must be in [1, steps={steps}], got {windows}")
    gen = torch.Generator().manual_seed(seed)
    temps = temperatures(t_start, t_end, steps).tolist()
    x, loss = x0.clone(), loss_fn(x0)
    n = x.shape[0]
    accepted = torch.zeros(steps, n)
    ends = [int(e) for e in np.linspace(0, steps, windows + 1)[1:]]
    is_end, window_loss = set(ends), []
    for t in range(steps):
        candidate = x + step * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        new = loss_fn(candidate)
        u = torch.rand(n, generator=gen, dtype=torch.float64).to(x.device)
        take = (new <= loss) | (u < torch.exp(-(new - loss).double() / temps[t]))
        x = torch.where(take[:, None], candidate, x)
        loss = torch.where(take, new, loss)
        accepted[t] = take.cpu()
        if t + 1 in is_end:
            window_loss.append(loss.cpu())
    starts = [0, *ends[:-1]]
    return Annealed(
        x=x,
        loss=loss,
        window_end=ends,
        temperature=[
            float(np.exp(np.mean(np.log(temps[i:j])))) for i, j in zip(starts, ends, strict=True)
        ],
        acceptance=torch.stack([accepted[i:j].mean(0) for i, j in zip(starts, ends, strict=True)]),
        window_loss=torch.stack(window_loss),
    )

"""The minimal ratio: how much of the neighbourhood of a minimum curves upwards.

Two definitions, which agree at a non-degenerate critical point:

- spectral (:func:`minimal_ratio`): the fraction of Hessian eigenvalues that are
  positive (the homework's "minimal ratio" is ``MinimalRatio.positive``);
- by sampling (:func:`minimal_ratio_by_sampling`): the fraction of random parameter
  vectors at distance ``radius`` whose loss is higher than at the point itself.

Near-zero eigenvalues need a tolerance. ReLU networks have many eigenvalues that are
exactly zero in exact arithmetic (dead units, directions inside one linear region), and
float64 round-off turns them into tiny numbers of either sign (about P * 1e-16 times the
largest eigenvalue). Counting those as positive or negative by their sign is the
published-solution pitfall; they must count as zero. The default tolerance is therefore
relative to the scale of the spectrum, ``rel_tol * max|lambda|``, with ``rel_tol = 1e-9``
far above round-off and far below the curvature of any direction that matters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure._functional import LossFn, Objective, default_columns, eval_mode

# Perturbed parameter vectors drawn at once (memory: this many parameter vectors).
_SAMPLES_PER_BATCH = 128


@dataclass(frozen=True)
class MinimalRatio:
    """Fractions of eigenvalues above ``tol``, below ``-tol`` and within ``[-tol, tol]``."""

    positive: float  # the minimal ratio
    negative: float
    zero: float
    tol: float  # absolute tolerance used
    n: int  # number of eigenvalues


@dataclass(frozen=True)
class SampledMinimalRatio:
    """Fractions of perturbed parameter vectors whose loss is higher / lower / equal."""

    higher: float  # the minimal ratio by sampling (analogue of MinimalRatio.positive)
    lower: float
    ties: float  # loss exactly equal in float64 (flat directions, e.g. dead ReLU units)
    radius: float  # distance of every perturbed vector from the parameters
    n_samples: int

    @property
    def stderr(self) -> float:
        """Binomial standard error of ``higher``."""
        return math.sqrt(self.higher * (1 - self.higher) / self.n_samples)


def _ratio_of_row(lam: torch.Tensor, tol: float | None, rel_tol: float) -> MinimalRatio:
    used = rel_tol * float(lam.abs().max()) if tol is None else float(tol)
    n = lam.numel()
    pos = int((lam > used).sum())
    neg = int((lam < -used).sum())
    return MinimalRatio(pos / n, neg / n, (n - pos - neg) / n, used, n)


def minimal_ratio(
    eigenvalues: torch.Tensor | np.ndarray,
    tol: float | None = None,
    rel_tol: float = 1e-9,
) -> MinimalRatio | list[MinimalRatio]:
    """Fractions of positive, negative and zero Hessian eigenvalues.

    Args:
        eigenvalues: (P,) eigenvalues of one Hessian, or (K, P) one row per model
            (e.g. from ``population_hessian_eigenvalues``); tensor or numpy array.
        tol: absolute tolerance: ``|lambda| <= tol`` counts as zero. Default
            ``rel_tol * max|lambda|`` of each row (see the module docstring).
        rel_tol: tolerance relative to the largest eigenvalue magnitude, when ``tol``
            is None.

    Returns:
        A :class:`MinimalRatio` for a 1-D input; a list of K of them for a 2-D input.
    """
    if not isinstance(eigenvalues, (torch.Tensor, np.ndarray)):
        raise DlprobeError(
            f"eigenvalues must be a torch.Tensor or numpy array, got {type(eigenvalues).__name__}"
        )
    lam = torch.as_tensor(eigenvalues).detach().to("cpu", torch.float64)
    if lam.ndim not in (1, 2) or lam.numel() == 0:
        raise DlprobeError(
            f"eigenvalues must be non-empty with shape (P,) or (K, P), got {tuple(lam.shape)}"
        )
    if not torch.isfinite(lam).all():
        raise DlprobeError("eigenvalues contain NaN or inf")
    if tol is not None and not tol >= 0:
        raise DlprobeError(f"tol must be >= 0 or None, got {tol}")
    if not rel_tol >= 0:
        raise DlprobeError(f"rel_tol must be >= 0, got {rel_tol}")
    if lam.ndim == 1:
        return _ratio_of_row(lam, tol, rel_tol)
    return [_ratio_of_row(row, tol, rel_tol) for row in lam]


def minimal_ratio_by_sampling(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    n_samples: int = 1000,
    radius: float = 1e-3,
    seed: int = 0,
) -> SampledMinimalRatio:
    """Fraction of random nearby parameter vectors whose loss is higher (in float64).

    Samples ``theta + radius * u`` with ``u`` uniform on the unit sphere in R^P. At a
    critical point the loss change is ``radius^2 / 2 * u^T H u`` to leading order, so the
    fraction that is higher estimates the share of directions curving upwards. Away from
    a critical point the gradient term ``radius * g.u`` dominates and the fraction tends
    to 1/2; choose ``radius`` well below ``|g| / lambda_max`` only if that is what you
    want to measure.

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn, x, y: loss and data (one batch, or ``x`` an iterable of batches), as
            for ``hessian``.
        n_samples: number of random directions.
        radius: distance of every sample from the parameters (> 0).
        seed: seed of the private ``torch.Generator`` (the global RNG is not used).

    Returns:
        :class:`SampledMinimalRatio`.
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise DlprobeError(f"n_samples must be a positive int, got {n_samples!r}")
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise DlprobeError(f"radius must be a positive finite number, got {radius!r}")
    with eval_mode(model):
        objective = Objective(model, loss_fn, x, y, dtype=torch.float64)
        theta = objective.theta  # (P,)
        gen = torch.Generator(device=theta.device).manual_seed(seed)
        base = objective.loss(theta)
        if not torch.isfinite(base):
            raise DlprobeError(f"the loss at the model's parameters is {float(base)}, not finite")
        per_batch = min(_SAMPLES_PER_BATCH, 8 * default_columns(theta.numel()))
        higher = ties = 0
        for start in range(0, n_samples, per_batch):
            m = min(per_batch, n_samples - start)
            u = torch.randn(m, theta.numel(), generator=gen, device=theta.device, dtype=theta.dtype)
            u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)  # (m, P) unit vectors
            losses = objective.losses(theta + radius * u)  # (m,)
            higher += int((losses > base).sum())
            ties += int((losses == base).sum())
    return SampledMinimalRatio(
        higher=higher / n_samples,
        lower=(n_samples - higher - ties) / n_samples,
        ties=ties / n_samples,
        radius=float(radius),
        n_samples=n_samples,
    )

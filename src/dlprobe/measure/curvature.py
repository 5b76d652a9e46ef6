"""Hessian curvature of models too large for the exact Hessian, from Hessian-vector products.

Every estimate here touches the Hessian only through exact float64 HVPs
(forward-over-reverse autodiff), never a P x P matrix:

- top eigenvalues: SciPy's ARPACK Lanczos (``eigsh``) on ``hessian_operator``;
- trace: Hutchinson's estimator with Rademacher probes, HVPs batched with ``vmap``;
- spectral density: stochastic Lanczos quadrature, with curvlinops' Lanczos
  tridiagonalization (``fast_lanczos``, algorithm 2 of Papyan 2020) per probe and
  Gaussian smoothing of the resulting quadrature nodes and weights.

All three are seeded and reproducible; the caller's global RNG state is left unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from curvlinops._torch_base import PyTorchLinearOperator
from curvlinops.papyan2020traces.spectrum import fast_lanczos
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import grad, jvp, vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    check_data,
    eval_mode,
    flat_loss_fn,
    flat_params,
    hessian_operator,
)

# Probe vectors multiplied by the Hessian per vmapped batch (bounds memory).
_PROBES_PER_BATCH = 32
_WHICH = ("LA", "SA", "LM")


def _hvp_fn(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """``(v (P,) -> H v, theta)`` in float64. Call inside ``eval_mode(model)``."""
    theta = flat_params(model, torch.float64)
    grad_f = grad(flat_loss_fn(model, loss_fn, x, y, torch.float64))

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(grad_f, (theta,), (v,))[1]

    return hvp, theta


class _HessianOperator(PyTorchLinearOperator):
    """The Hessian as a curvlinops operator: ``H @ V`` for V of shape (P,) or (P, m)."""

    SELF_ADJOINT = True

    def __init__(self, hvp: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor):
        super().__init__([tuple(theta.shape)], [tuple(theta.shape)])
        self._hvp, self._theta = hvp, theta

    @property
    def device(self) -> torch.device:
        return self._theta.device

    @property
    def dtype(self) -> torch.dtype:
        return self._theta.dtype

    def _matmat(self, X: list[torch.Tensor]) -> list[torch.Tensor]:
        return [vmap(self._hvp, in_dims=1, out_dims=1)(X[0]).detach()]  # (P, m)


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """curvlinops draws Lanczos start vectors from the global RNG: seed it inside a fork,
    so results are reproducible and the caller's RNG state is restored afterwards."""
    if device.type == "cuda":
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)  # seeds the CPU and every CUDA device, all forked
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield


def _check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DlprobeError(f"{name} must be an int >= {minimum}, got {value!r}")


def top_hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = 1,
    which: str = "LA",
    seed: int = 0,
) -> torch.Tensor:
    """The k extreme eigenvalues of the float64 loss Hessian by Lanczos (ARPACK ``eigsh``).

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn, x, y: loss and data, as for ``hessian``.
        k: how many eigenvalues (1 <= k < P).
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic, ``"LM"`` largest
            magnitude.
        seed: seed of the start vector (a private NumPy generator).

    Returns:
        (k,) float64 CPU tensor, most extreme first: descending for LA, ascending for SA,
        by decreasing magnitude for LM.
    """
    check_data(model, x, y)
    if which not in _WHICH:
        raise DlprobeError(f"which must be one of {', '.join(_WHICH)}, got {which!r}")
    _check_positive_int("k", k)
    with eval_mode(model):
        op = hessian_operator(model, loss_fn, x, y)
        n = op.shape[0]
        if k >= n:
            raise DlprobeError(
                f"k must be smaller than the number of parameters ({n}); for all eigenvalues "
                "use hessian_eigenvalues"
            )
        v0 = np.random.default_rng(seed).standard_normal(n)
        # tol=0: converge to machine precision, so the values match an exact eigensolver.
        lam = eigsh(op, k=k, which=which, v0=v0, tol=0, return_eigenvectors=False)
    key = {"LA": -lam, "SA": lam, "LM": -np.abs(lam)}[which]
    return torch.as_tensor(lam[np.argsort(key, kind="stable")].copy(), dtype=torch.float64)


@dataclass(frozen=True)
class TraceEstimate:
    """A Hutchinson estimate of tr(H) with its standard error."""

    estimate: float
    stderr: float  # sample standard deviation of v^T H v / sqrt(n_samples)
    n_samples: int


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    n_samples: int = 100,
    seed: int = 0,
) -> TraceEstimate:
    """Hutchinson estimate of the Hessian trace: the mean of ``v^T H v`` over Rademacher v.

    Unbiased; its variance per probe is ``2 * sum_{i != j} H_ij^2``.

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn, x, y: loss and data, as for ``hessian``.
        n_samples: number of probe vectors (>= 2, for the standard error).
        seed: seed of the private ``torch.Generator`` drawing the probes.

    Returns:
        :class:`TraceEstimate`.
    """
    check_data(model, x, y)
    _check_positive_int("n_samples", n_samples, minimum=2)
    with eval_mode(model):
        hvp, theta = _hvp_fn(model, loss_fn, x, y)
        gen = torch.Generator(device=theta.device).manual_seed(seed)
        quad = []
        for start in range(0, n_samples, _PROBES_PER_BATCH):
            m = min(_PROBES_PER_BATCH, n_samples - start)
            v = torch.randint(0, 2, (m, theta.numel()), generator=gen, device=theta.device)
            v = v.to(theta.dtype) * 2 - 1  # (m, P) Rademacher
            quad.append((vmap(hvp)(v) * v).sum(dim=1).detach())  # (m,) v^T H v
    q = torch.cat(quad)  # (n_samples,)
    return TraceEstimate(
        estimate=float(q.mean()),
        stderr=float(q.std() / math.sqrt(n_samples)),
        n_samples=n_samples,
    )


def hessian_spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    n_probes: int = 5,
    lanczos_steps: int = 80,
    grid: torch.Tensor | None = None,
    sigma: float | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed eigenvalue density of the Hessian by stochastic Lanczos quadrature.

    Each probe (a random unit vector v) gives a Lanczos tridiagonal matrix whose
    eigenvalues t_i and first eigenvector components w_i = e_1[i]^2 form a quadrature
    rule: ``sum_i w_i f(t_i) ~ v^T f(H) v``, whose average over probes estimates
    ``tr f(H) / P``. The density is that rule with f a Gaussian bump of width ``sigma``:
    ``rho(l) = mean_probes sum_i w_i N(l; t_i, sigma^2)``; it integrates to 1.

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn, x, y: loss and data, as for ``hessian``.
        n_probes: number of random start vectors averaged.
        lanczos_steps: Lanczos iterations (HVPs) per probe; at most P are run.
        grid: eigenvalues at which to evaluate the density (1-D); default 1000 points
            spanning all quadrature nodes plus 5 sigma on each side.
        sigma: width of the Gaussian bumps in eigenvalue units; default 1% of the range
            of the quadrature nodes.
        seed: seed of the start vectors (probe p uses ``seed + p``).

    Returns:
        ``(grid, density)``, two float64 tensors of equal length.
    """
    check_data(model, x, y)
    _check_positive_int("n_probes", n_probes)
    _check_positive_int("lanczos_steps", lanczos_steps)
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise DlprobeError(f"sigma must be a positive number or None, got {sigma!r}")
    if grid is not None and not (isinstance(grid, torch.Tensor) and grid.ndim == 1 and len(grid)):
        raise DlprobeError("grid must be a non-empty 1-D tensor of eigenvalues, or None")
    with eval_mode(model):
        hvp, theta = _hvp_fn(model, loss_fn, x, y)
        op = _HessianOperator(hvp, theta)
        steps = min(lanczos_steps, theta.numel())
        nodes, weights = [], []
        for p in range(n_probes):
            with _seeded_global_rng(seed + p, theta.device):
                t, s = fast_lanczos(op, steps)  # (m,), (m, m)
            nodes.append(t)
            weights.append(s[0] ** 2)
    t = torch.stack(nodes)  # (n_probes, m)
    w = torch.stack(weights) / n_probes  # (n_probes, m), sums to 1
    if sigma is None:
        sigma = 0.01 * float(t.max() - t.min())
        if sigma == 0:  # all nodes coincide (H = c I): any small positive width will do
            sigma = 1e-3 * max(float(t.abs().max()), 1.0)
    if grid is None:
        lo, hi = float(t.min()) - 5 * sigma, float(t.max()) + 5 * sigma
        grid = torch.linspace(lo, hi, 1000, dtype=torch.float64, device=t.device)
    grid = grid.to(t.device, torch.float64)
    z = (grid[:, None, None] - t) / sigma  # (G, n_probes, m)
    bumps = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (bumps * w).sum(dim=(1, 2))  # (G,)
    return grid, density

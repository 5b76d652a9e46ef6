"""Hessian curvature of models too large for the exact Hessian, from Hessian-vector products.

Every estimate here touches the Hessian only through exact Hessian-vector products
(reverse-over-reverse autodiff, see ``_functional.HessianOperator``), never a P x P
matrix; with one batch the gradient's graph is built once and each product costs one
backward pass through it:

- top eigenvalues (and eigenvectors): thick-restart Lanczos on the model's device
  (``_lanczos``), which checks convergence after every product;
- trace: Hutchinson's estimator with Rademacher probes, a few probes per vmapped batch;
- spectral density: stochastic Lanczos quadrature (algorithm 2 of Papyan 2020: Lanczos
  without reorthogonalization, one run per random start vector) and Gaussian smoothing of
  the quadrature nodes and weights.

Each can use the generalized Gauss-Newton matrix instead of the Hessian
(``curvature="ggn"``, curvlinops' ``GGNLinearOperator``). All accept the data as one
batch ``(x, y)`` or as an iterable of batches (the loss is the mean over all examples), a
subset of the parameters (``params``: the Hessian block of those parameters, e.g. one
layer's spectrum) and the precision ``dtype``: float64 by default, exact enough for small
models; float32 halves memory and time on large ones.
All are seeded and leave the caller's global RNG state unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    Objective,
    default_columns,
    eval_mode,
    quiet_forward_ad,
)
from dlprobe.measure._lanczos import lanczos_eigenpairs

_WHICH = ("LA", "SA", "LM")


def _check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DlprobeError(f"{name} must be an int >= {minimum}, got {value!r}")


def default_tol(dtype: torch.dtype) -> float:
    """Lanczos' relative accuracy by default: machine precision (0) in float64, else the
    square root of the dtype's epsilon (3.5e-4 in float32), above its round-off."""
    return 0.0 if dtype == torch.float64 else math.sqrt(torch.finfo(dtype).eps)


def top_hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    k: int = 1,
    which: str = "LA",
    seed: int = 0,
    *,
    tol: float | None = None,
    maxiter: int | None = None,
    ncv: int | None = None,
    dtype: torch.dtype = torch.float64,
    params: Sequence[str] | None = None,
    return_eigenvectors: bool = False,
    curvature: str = "hessian",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The k extreme eigenvalues of the loss Hessian by Lanczos (thick restart, on the
    model's device; see ``_lanczos``).

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn: ``loss_fn(output, target) -> scalar`` (a mean over the batch, or an
            ``nn.Module`` loss with ``reduction="mean"`` or ``"sum"``).
        x, y: inputs and targets (two tensors on the model's device), or ``x`` an
            iterable of ``(x, y)`` batches such as a ``DataLoader`` and ``y`` omitted.
        k: how many eigenvalues (1 <= k < P).
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic, ``"LM"`` largest
            magnitude.
        seed: seed of the start vector (a private generator on the CPU, so the start is
            the same on every device).
        tol: relative accuracy: an eigenpair is accepted when its residual norm
            ``|H v - lambda v|`` is at most ``tol |lambda|``, so lambda is that close to
            an eigenvalue of H (and usually far closer); ``None``: machine precision in
            float64, ``sqrt(eps)`` otherwise (see :func:`default_tol`). With a loose tol
            and eigenvalues closer together than it, the Krylov space may not have found
            the most extreme one yet: one of its neighbours is returned.
        maxiter: most Lanczos restarts; ``None``: ``max(100, 10 P / ncv)``.
        ncv: Lanczos vectors kept, each of P numbers in ``dtype`` (the solver's memory);
            ``None``: ``max(2k + 1, 20)``, or ``max(2k + 1, 10)`` from about a million
            parameters on (one or two products more, half the memory).
        dtype: precision of the Hessian-vector products and the Lanczos vectors.
        params: names of the parameters whose Hessian block is taken (default: all
            trainable parameters), as in ``model.named_parameters()``.
        return_eigenvectors: also return the unit eigenvectors.
        curvature: ``"hessian"``, or ``"ggn"`` for the generalized Gauss-Newton matrix
            ``J^T (d^2 loss / d output^2) J`` averaged over examples (curvlinops'
            ``GGNLinearOperator``; positive semi-definite for convex losses).

    Returns:
        (k,) float64 CPU tensor, most extreme first: descending for LA, ascending for SA,
        by decreasing magnitude for LM. With ``return_eigenvectors``, a pair
        ``(eigenvalues, eigenvectors)`` with eigenvectors (P, k) in ``dtype`` on the
        model's device, column i for eigenvalue i, rows in the order of ``params``
        flattened as in ``named_parameters``.

    Raises:
        DlprobeError: bad input, or Lanczos did not converge within ``maxiter``.
    """
    if which not in _WHICH:
        raise DlprobeError(f"which must be one of {', '.join(_WHICH)}, got {which!r}")
    _check_positive_int("k", k)
    for name, value in (("maxiter", maxiter), ("ncv", ncv)):
        if value is not None:
            _check_positive_int(name, value)
    if tol is not None and not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise DlprobeError(f"tol must be a number >= 0 or None, got {tol!r}")
    with eval_mode(model), quiet_forward_ad():
        objective = Objective(model, loss_fn, x, y, params=params, dtype=dtype)
        n, device = objective.n_params, objective.theta.device
        if k >= n:
            raise DlprobeError(
                f"k must be smaller than the number of parameters ({n}); for all eigenvalues "
                "use hessian_eigenvalues"
            )
        op = objective.curvature_operator(curvature)
        gen = torch.Generator().manual_seed(seed)
        v0 = torch.randn(n, generator=gen, dtype=torch.float64).to(device, dtype)
        values, vectors, _ = lanczos_eigenpairs(
            op.__matmul__,
            v0,
            k,
            which,
            tol=default_tol(dtype) if tol is None else tol,
            ncv=ncv,
            maxiter=maxiter,
            generator=gen,
        )
    return (values, vectors) if return_eigenvectors else values


@dataclass(frozen=True)
class TraceEstimate:
    """A Hutchinson estimate of tr(H) with its standard error."""

    estimate: float
    stderr: float  # sample standard deviation of v^T H v / sqrt(n_samples)
    n_samples: int


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    n_samples: int = 100,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float64,
    params: Sequence[str] | None = None,
    probes_per_batch: int | None = None,
    curvature: str = "hessian",
) -> TraceEstimate:
    """Hutchinson estimate of the Hessian trace: the mean of ``v^T H v`` over Rademacher v.

    Unbiased; its variance per probe is ``2 * sum_{i != j} H_ij^2``.

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn, x, y: loss and data, as for :func:`top_hessian_eigenvalues`.
        n_samples: number of probe vectors (>= 2, for the standard error).
        seed: seed of the private ``torch.Generator`` drawing the probes.
        dtype, params: precision and parameter block, as for
            :func:`top_hessian_eigenvalues`.
        probes_per_batch: probe vectors multiplied by the Hessian at once (memory grows
            with it: about 3 parameter vectors plus the activations per probe); ``None``:
            :func:`default_columns` (1 for a model of a million parameters or more).
            The estimate does not depend on it.
        curvature: ``"hessian"`` or ``"ggn"``, as for :func:`top_hessian_eigenvalues`.

    Returns:
        :class:`TraceEstimate`.
    """
    _check_positive_int("n_samples", n_samples, minimum=2)
    if probes_per_batch is not None:
        _check_positive_int("probes_per_batch", probes_per_batch)
    with eval_mode(model), quiet_forward_ad():
        objective = Objective(model, loss_fn, x, y, params=params, dtype=dtype)
        op = objective.curvature_operator(curvature)
        p, device = objective.n_params, objective.theta.device
        m_max = probes_per_batch or default_columns(p)
        gen = torch.Generator(device=device).manual_seed(seed)
        quad = []
        for start in range(0, n_samples, m_max):
            m = min(m_max, n_samples - start)
            # Drawn as rows, one probe after another, so the probes do not depend on
            # how many are multiplied at once.
            v = torch.randint(0, 2, (m, p), generator=gen, device=device).T
            v = v.to(dtype) * 2 - 1  # (P, m) Rademacher columns
            quad.append((v * (op @ v)).sum(dim=0))  # (m,) v^T H v
    q = torch.cat(quad).to(torch.float64)  # (n_samples,)
    return TraceEstimate(
        estimate=float(q.mean()),
        stderr=float(q.std() / math.sqrt(n_samples)),
        n_samples=n_samples,
    )


def lanczos_quadrature(op, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss quadrature nodes and weights of the spectral measure of ``op`` at ``v``.

    Runs ``steps`` Lanczos iterations from ``v / |v|`` (three vectors of memory, no
    reorthogonalization: Papyan 2020, algorithm 2) and returns the eigenvalues t (m,) of
    the tridiagonal matrix T and the squared first components w (m,) of its unit
    eigenvectors: ``sum_i w_i t_i^j = v^T H^j v / |v|^2`` for ``j < 2m`` in exact
    arithmetic. Stops early (m < steps) when the Krylov space is exhausted.

    Returns:
        ``(nodes, weights)``, float64 on the CPU; the weights sum to 1.
    """
    v = v / torch.linalg.vector_norm(v)
    v_prev = torch.zeros_like(v)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    for _ in range(steps):
        w = op @ v - beta * v_prev
        alpha = float(w @ v)
        w -= alpha * v
        alphas.append(alpha)
        beta = float(torch.linalg.vector_norm(w))
        if len(alphas) == steps:
            break
        # A residual at round-off level: the Krylov space is (numerically) invariant and
        # the rule is exact up to O(beta^2); going on would only add noise nodes.
        scale = max(max(abs(a) for a in alphas), max(betas, default=0.0))
        if beta <= math.sqrt(torch.finfo(v.dtype).eps) * scale:
            break
        betas.append(beta)
        v_prev, v = v, w / beta
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(t)  # (m,), (m, m)
    return nodes, vectors[0] ** 2


def hessian_spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    n_probes: int = 5,
    lanczos_steps: int = 80,
    grid: torch.Tensor | None = None,
    sigma: float | None = None,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float64,
    params: Sequence[str] | None = None,
    curvature: str = "hessian",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed eigenvalue density of the Hessian by stochastic Lanczos quadrature.

    Each probe (a random Gaussian vector v) gives a Lanczos tridiagonal matrix whose
    eigenvalues t_i and first eigenvector components w_i = e_1[i]^2 form a quadrature
    rule: ``sum_i w_i f(t_i) ~ v^T f(H) v / |v|^2``, whose average over probes estimates
    ``tr f(H) / P``. The density is that rule with f a Gaussian bump of width ``sigma``:
    ``rho(l) = mean_probes sum_i w_i N(l; t_i, sigma^2)``; it integrates to 1.

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn, x, y: loss and data, as for :func:`top_hessian_eigenvalues`.
        n_probes: number of random start vectors averaged.
        lanczos_steps: Lanczos iterations (HVPs) per probe; at most P are run.
        grid: eigenvalues at which to evaluate the density (1-D); default 1000 points
            spanning all quadrature nodes plus 5 sigma on each side.
        sigma: width of the Gaussian bumps in eigenvalue units; default 1% of the range
            of the quadrature nodes.
        seed: seed of the private ``torch.Generator`` drawing the start vectors.
        dtype, params, curvature: precision, parameter block and matrix, as for
            :func:`top_hessian_eigenvalues`.

    Returns:
        ``(grid, density)``, two float64 CPU tensors of equal length.
    """
    _check_positive_int("n_probes", n_probes)
    _check_positive_int("lanczos_steps", lanczos_steps)
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise DlprobeError(f"sigma must be a positive number or None, got {sigma!r}")
    if grid is not None and not (isinstance(grid, torch.Tensor) and grid.ndim == 1 and len(grid)):
        raise DlprobeError("grid must be a non-empty 1-D tensor of eigenvalues, or None")
    with eval_mode(model), quiet_forward_ad():
        objective = Objective(model, loss_fn, x, y, params=params, dtype=dtype)
        op = objective.curvature_operator(curvature)
        p, device = objective.n_params, objective.theta.device
        gen = torch.Generator(device=device).manual_seed(seed)
        rules = []
        for _ in range(n_probes):
            v = torch.randn(p, generator=gen, device=device, dtype=dtype)
            rules.append(lanczos_quadrature(op, v, min(lanczos_steps, p)))
    t = torch.cat([nodes for nodes, _ in rules])  # (sum m,) nodes of all probes
    w = torch.cat([weights for _, weights in rules]) / n_probes  # (sum m,), sums to 1
    if sigma is None:
        sigma = 0.01 * float(t.max() - t.min())
        if sigma == 0:  # all nodes coincide (H = c I): any small positive width will do
            sigma = 1e-3 * max(float(t.abs().max()), 1.0)
    if grid is None:
        lo, hi = float(t.min()) - 5 * sigma, float(t.max()) + 5 * sigma
        grid = torch.linspace(lo, hi, 1000, dtype=torch.float64)
    grid = grid.detach().to("cpu", torch.float64)
    z = (grid[:, None] - t) / sigma  # (G, sum m)
    bumps = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (bumps * w).sum(dim=1)  # (G,)
    return grid, density

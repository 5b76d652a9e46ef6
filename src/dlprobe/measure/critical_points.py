"""Critical points of a loss: where its gradient is zero, found by a float64 Newton search.

Training leaves a model where the gradient is small, not zero, and the smallest Hessian
eigenvalues are often as small as the gradient: their signs then depend on where exactly
one stops. :func:`find_critical_points` drives the gradient g(θ) itself to zero by
Levenberg-Marquardt on the equations g(θ) = 0, whose Jacobian is the Hessian H::

    step = -(H² + μ I)⁻¹ H g        (through H = Q diag(λ) Qᵀ: -Q diag(λ / (λ² + μ)) Qᵀ g)

With μ -> 0 this is Newton's step for g = 0, which converges to saddles as well as minima
(quadratically where H is non-singular); a large μ turns it into a short step downhill on
|g|². μ is adapted per model: divided by 10 after a step that lowered |g|, multiplied by
10 (and the step refused) otherwise. Everything is float64 and the Hessians are exact, so
this is for models of up to a few hundred parameters.

Where it fails, and why (measured on 1-10-10-1 MLPs fitting a sine, see minimal-ratio):
a trained network usually sits where the gradient lies almost entirely along Hessian
directions of near-zero curvature (|λ| < 1e-8 with |g| ~ 1e-4): the loss still slopes
gently along flat directions (saturating units, an interpolating set approached only
asymptotically), so the nearest zero of g is far away or at infinity and no local method
reaches it; μ then grows and the search stops. Such runs come back with
``converged`` False: they are not at a critical point.

Example::

    f = lambda t: (t[0] ** 2 - 1) ** 2 + t[1] ** 2  # saddle at (0, 0), minima at (±1, 0)
    start = torch.tensor([[0.1, 0.2], [0.8, -0.1]], dtype=torch.float64)
    found = find_critical_points(f, start, grad_tol=1e-12)
    found.params  # (2, 2): about [[0, 0], [1, 0]]; found.converged: [True, True]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import grad, jacfwd, jacrev, vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    check_data,
    eval_mode,
    flat_loss_fn,
    quiet_forward_ad,
)

NU_GIVE_UP = 1e12  # damping μ / max λ² above which a model's search is abandoned (stalled)


@dataclass(frozen=True)
class CriticalPoints:
    """Result of :func:`find_critical_points` for K starting points (all float64, on CPU).

    params: (K, P) where each search ended; grad_norm: (K,) |g| there (NaN for a
    non-finite start); converged: (K,) bool, grad_norm < grad_tol; iterations: (K,)
    Newton steps tried; grad_norm_history: (K, max_iter + 1) |g| before each step, the
    final value repeated once a search has stopped.
    """

    params: torch.Tensor
    grad_norm: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    grad_norm_history: torch.Tensor


def find_critical_points(
    f: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    grad_tol: float = 1e-10,
    max_iter: int = 50,
    damping: float = 1e-3,
    chunk_size: int | None = 16,
) -> CriticalPoints:
    """Search a zero of the gradient of ``f`` from each row of ``start`` (see module doc).

    Args:
        f: ``theta (P,) float64 -> scalar``, differentiable twice by ``torch.func``.
        start: (K, P) starting points; rows that are not finite are left as they are.
        grad_tol: a search stops, converged, once |g| < grad_tol.
        max_iter: Newton steps at most per row.
        damping: initial μ, relative to each model's largest squared eigenvalue.
        chunk_size: rows per vmapped Hessian batch (None: all at once).

    Returns:
        :class:`CriticalPoints`.
    """
    if not isinstance(start, torch.Tensor) or start.ndim != 2 or start.numel() == 0:
        shape = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
        raise DlprobeError(f"start must be a non-empty (K, P) tensor, got {shape}")
    if not (isinstance(grad_tol, (int, float)) and grad_tol > 0):
        raise DlprobeError(f"grad_tol must be > 0, got {grad_tol!r}")
    if not (isinstance(max_iter, int) and max_iter >= 0):
        raise DlprobeError(f"max_iter must be an int >= 0, got {max_iter!r}")
    if not (isinstance(damping, (int, float)) and damping > 0):
        raise DlprobeError(f"damping must be > 0, got {damping!r}")
    theta = start.detach().to("cpu", torch.float64).clone()  # (K, P)
    gradient, hess = vmap(grad(f)), vmap(jacfwd(jacrev(f)), chunk_size=chunk_size)
    ok = torch.isfinite(theta).all(1)  # (K,) non-finite starts are not searched
    g = torch.full_like(theta, float("nan"))
    if ok.any():
        g[ok] = gradient(theta[ok]).detach()
    norm = torch.linalg.vector_norm(g, dim=1)  # (K,)
    nu = torch.full_like(norm, float(damping))  # (K,) μ / max λ², adapted per model
    iterations = torch.zeros(len(theta), dtype=torch.long)
    history = [norm.clone()]
    with quiet_forward_ad():  # jacfwd's first use warns about torch.jit.script
        for _ in range(max_iter):
            active = (ok & (norm >= grad_tol) & (nu <= NU_GIVE_UP)).nonzero()[:, 0]  # (A,)
            if len(active):
                better = _lm_step(gradient, hess, theta, g, norm, nu[active], active)
                nu[active] = torch.where(better, nu[active] / 10, nu[active] * 10)
                iterations[active] += 1
            history.append(norm.clone())
    return CriticalPoints(
        params=theta,
        grad_norm=norm,
        converged=ok & (norm < grad_tol),
        iterations=iterations,
        grad_norm_history=torch.stack(history, dim=1),  # (K, max_iter + 1)
    )


def _lm_step(gradient, hess, theta, g, norm, nu, active) -> torch.Tensor:
    """One damped Newton step for the rows ``active``, kept where it lowers |g|; updates
    ``theta``, ``g`` and ``norm`` in place and returns which rows improved (A,)."""
    h = hess(theta[active]).detach()  # (A, P, P)
    lam, q = torch.linalg.eigh((h + h.transpose(1, 2)) / 2)  # (A, P), (A, P, P)
    mu = nu * lam.abs().amax(1) ** 2  # (A,)
    gq = (q.transpose(1, 2) @ g[active, :, None])[..., 0]  # (A, P) g in the eigenbasis
    step = -(q @ (lam * gq / (lam**2 + mu[:, None]))[..., None])[..., 0]  # (A, P)
    trial = theta[active] + step
    g_trial = gradient(trial).detach()  # (A, P)
    norm_trial = torch.linalg.vector_norm(g_trial, dim=1)  # (A,)
    better = norm_trial < norm[active]  # a NaN trial compares False: refused
    theta[active] = torch.where(better[:, None], trial, theta[active])
    g[active] = torch.where(better[:, None], g_trial, g[active])
    norm[active] = torch.where(better, norm_trial, norm[active])
    return better


def model_critical_points(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    **search,
) -> CriticalPoints:
    """:func:`find_critical_points` of the mean loss of ``model``'s architecture on (x, y).

    Args:
        model: a model of the architecture (its own parameter values are not used; it is
            evaluated in eval mode, in float64, and left as found).
        loss_fn: ``loss_fn(output, target) -> scalar mean``.
        x, y: the data, shared by all K searches.
        start: (K, P) flat parameter vectors in ``named_parameters`` order, e.g.
            ``Population.flat_params()`` or a training snapshot.
        **search: ``grad_tol``, ``max_iter``, ``damping``, ``chunk_size``.

    Returns:
        :class:`CriticalPoints`; ``params`` rows load back with
        ``Population.load_flat_params``.
    """
    check_data(model, x, y)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not isinstance(start, torch.Tensor) or start.ndim != 2 or start.shape[1] != n_params:
        shape = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
        raise DlprobeError(f"start must be (K, {n_params}) flat parameter vectors, got {shape}")
    with eval_mode(model):
        f = flat_loss_fn(model, loss_fn, x.cpu(), y.cpu(), torch.float64)
        return find_critical_points(f, start, **search)


def zero_tolerance(
    eigenvalues: torch.Tensor, grad_norm: torch.Tensor, per_grad: float = 1.0
) -> torch.Tensor:
    """The |eigenvalue| up to which a Hessian eigenvalue counts as zero at a point whose
    gradient norm is |g|: ``max(per_grad * |g|, P * eps * max|λ|)``, per row.

    Why |g|: along an eigenvector with eigenvalue λ the Newton step to the nearest
    critical point is |g_i| / |λ| <= |g| / |λ|. With |λ| <= per_grad * |g| that step can be
    1 / per_grad long (per_grad = 1: a unit length in parameter space), so the sign of λ
    says where the search stopped, not what the critical point is. The second term is the
    round-off of a float64 eigensolver (eps = 2.2e-16), which exact zeros (dead ReLU
    units, symmetries) never rise above.

    Args:
        eigenvalues: (K, P) eigenvalues, one row per point.
        grad_norm: (K,) gradient norm at each point.
        per_grad: the factor c of the rule (>= 0; 0 leaves only round-off).

    Returns:
        (K,) float64 absolute tolerances, for ``minimal_ratio(row, tol=...)``.
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    norm = torch.as_tensor(grad_norm, dtype=torch.float64)
    if lam.ndim != 2 or norm.shape != lam.shape[:1]:
        raise DlprobeError(
            f"eigenvalues must be (K, P) and grad_norm (K,), got {tuple(lam.shape)} and "
            f"{tuple(norm.shape)}"
        )
    if not per_grad >= 0:
        raise DlprobeError(f"per_grad must be >= 0, got {per_grad}")
    eps = torch.finfo(torch.float64).eps
    return torch.maximum(per_grad * norm, lam.shape[1] * eps * lam.abs().amax(1))

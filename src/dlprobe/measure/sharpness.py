"""Sharpness of a minimum: how fast the loss rises around the model's parameters.

Three estimates of the worst loss increase in a small neighbourhood (``sharpness``) and
the width of the valley at a given height (``valley_width``), computed in float64 (or
``dtype=``) on the model viewed as a function of one flat parameter vector theta (P,).
The data is one batch ``(x, y)`` or an iterable of batches; the loss is the mean over all
examples.

- ``"keskar"`` (Keskar et al. 2017): ``max_z (L(theta + z) - L(theta)) / (1 + L(theta))``
  over the box ``|z_i| <= epsilon (|theta_i| + 1)``, maximized with L-BFGS-B. Returned as a
  plain ratio; Keskar et al. report 100 times this number.
- ``"ball"``: ``max_z L(theta + z) - L(theta)`` over the ball ``||z||_2 <= epsilon``, by
  projected gradient ascent (not normalized by ``1 + L``).
- ``"hessian"``: the second-order estimate ``||H||_2 epsilon^2 / (2 (1 + L))`` near a critical
  point, with ``||H||_2`` the largest absolute eigenvalue of the loss Hessian (Lanczos).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    Objective,
    check_dtype,
    default_columns,
    eval_mode,
)
from dlprobe.measure.curvature import top_hessian_eigenvalues
from dlprobe.measure.hessian import hessian

METHODS = ("keskar", "ball", "hessian")
BISECTION_STEPS = 53  # halvings of a valley-edge bracket: down to float64 resolution


@dataclass(frozen=True)
class SharpnessResult:
    """One sharpness estimate.

    Attributes:
        value: the sharpness (see the module docstring for each method's formula).
        method: ``"keskar"``, ``"ball"`` or ``"hessian"``.
        epsilon: neighbourhood size it was measured at.
        base_loss: ``L(theta)`` at the model's parameters.
        max_loss: highest loss found in the neighbourhood; for ``"hessian"`` the
            second-order prediction ``L + ||H||_2 epsilon^2 / 2``.
        hessian_norm: ``||H||_2`` (``"hessian"`` only, else ``None``).
        steps: optimizer iterations run (``"keskar"``, ``"ball"``; 0 for ``"hessian"``).
    """

    value: float
    method: str
    epsilon: float
    base_loss: float
    max_loss: float
    hessian_norm: float | None
    steps: int


@dataclass(frozen=True)
class ValleyWidth:
    """Width of the valley at a loss height, along m unit directions.

    Attributes:
        widths: (m,) ``t_plus + t_minus`` per direction; ``inf`` where a side never
            reaches the height within ``max_distance``.
        distances: (m, 2) the distances ``t_plus`` (along +d) and ``t_minus`` (along -d).
        reached: (m, 2) whether each side reached the height within ``max_distance``.
        mean: mean of ``widths`` (``inf`` if any direction did not reach the height).
        height: loss increase that defines the valley's edge.
        directions: (m, P) the unit directions, in the computation's dtype.
    """

    widths: torch.Tensor
    distances: torch.Tensor
    reached: torch.Tensor
    mean: float
    height: float
    directions: torch.Tensor


def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    epsilon: float = 1e-4,
    method: str = "keskar",
    steps: int = 100,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float64,
) -> SharpnessResult:
    """Sharpness of the loss at the model's parameters (eval mode, float64 by default).

    Args:
        model, loss_fn: the model and the loss ``loss_fn(model(x), y)``, a mean over the
            batch (or an ``nn.Module`` loss with ``reduction="mean"`` or ``"sum"``).
        x, y: the data the loss is measured on (e.g. 500 training examples): two tensors
            on the model's device, or ``x`` an iterable of ``(x, y)`` batches (a
            ``DataLoader``) and ``y`` omitted; the loss is the mean over all examples.
        epsilon: neighbourhood size: box scale for ``"keskar"``, ball radius for
            ``"ball"`` and ``"hessian"``.
        method: ``"keskar"``, ``"ball"`` or ``"hessian"`` (see the module docstring).
        steps: most L-BFGS-B iterations (``"keskar"``) or gradient-ascent steps
            (``"ball"``); unused by ``"hessian"``.
        seed: seeds the random starting point (``"keskar"``, ``"ball"``) or Lanczos vector.
        dtype: precision of the computation.

    Returns:
        ``SharpnessResult``.
    """
    if method not in METHODS:
        raise DlprobeError(f"unknown sharpness method {method!r}; valid: {', '.join(METHODS)}")
    if not epsilon > 0 or not math.isfinite(epsilon):
        raise DlprobeError(f"epsilon must be a positive finite number, got {epsilon!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DlprobeError(f"steps must be a positive int, got {steps!r}")
    check_dtype(dtype)
    with eval_mode(model):
        objective = Objective(model, loss_fn, x, y, dtype=dtype)
        theta = objective.theta  # (P,)
        base = objective.loss(theta).item()
        if method == "hessian":
            h_norm = _hessian_norm(model, loss_fn, x, y, seed, dtype, objective.n_params)
            increase = 0.5 * h_norm * epsilon**2
            return SharpnessResult(
                increase / (1 + base), method, epsilon, base, base + increase, h_norm, 0
            )
        if method == "keskar":
            max_loss, n_steps = _box_max(objective, base, epsilon, steps, seed)
            value = (max_loss - base) / (1 + base)
        else:
            max_loss, n_steps = _ball_max(objective, epsilon, steps, seed)
            value = max_loss - base
    return SharpnessResult(value, method, epsilon, base, max_loss, None, n_steps)


def _hessian_norm(model, loss_fn, x, y, seed: int, dtype: torch.dtype, n_params: int) -> float:
    """Largest |eigenvalue| of the loss Hessian, by Lanczos (``top_hessian_eigenvalues``)."""
    if n_params == 1:  # Lanczos needs k < P; the 1x1 Hessian is its own eigenvalue
        return abs(float(hessian(model, loss_fn, x, y, dtype)[0, 0]))
    eigenvalue = top_hessian_eigenvalues(
        model, loss_fn, x, y, k=1, which="LM", seed=seed, dtype=dtype
    )
    return abs(float(eigenvalue[0]))


def _box_max(objective: Objective, base: float, epsilon: float, steps: int, seed: int):
    """Keskar's box maximum by L-BFGS-B over ``u`` in [-1, 1]^P with ``z = bound * u``.

    Working in ``u`` and on ``L - base`` keeps the problem well scaled although the loss
    changes by ~epsilon^2; tolerances are zero so only ``steps`` (or a stalled line search)
    stops it.
    """
    from scipy.optimize import minimize  # slow to import: only when used

    theta = objective.theta
    bound = epsilon * (theta.abs() + 1)  # (P,) box half-widths

    def negative(u: np.ndarray) -> tuple[float, np.ndarray]:
        u_t = torch.as_tensor(u, device=theta.device).to(theta.dtype)
        loss, g = objective.value_and_grad(theta + bound * u_t)
        return -(loss.item() - base), -(bound * g).cpu().numpy().astype(np.float64)

    # The gradient vanishes at a minimum, so start from a small random point in the box.
    rng = np.random.default_rng(seed)
    u0 = rng.uniform(-0.01, 0.01, theta.numel())
    start = -negative(u0)[0]
    res = minimize(
        negative,
        u0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-1.0, 1.0)] * theta.numel(),
        options={"maxiter": steps, "ftol": 0.0, "gtol": 0.0},
    )
    return base + max(-float(res.fun), start), int(res.nit)


def _ball_max(objective: Objective, epsilon: float, steps: int, seed: int):
    """Projected gradient ascent on ``L(theta + z)`` over ``||z|| <= epsilon``.

    Each step moves ``epsilon`` along the normalized gradient, then projects back onto the
    ball; the best loss seen is returned (every iterate is feasible).
    """
    theta = objective.theta
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same start on every device
    z = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
    z = z.to(device=theta.device, dtype=theta.dtype)  # (P,)
    z = z * (epsilon / z.norm())
    best = -math.inf
    for step in range(steps):
        loss, g = objective.value_and_grad(theta + z)
        best = max(best, loss.item())
        g_norm = g.norm()
        if g_norm == 0:
            return best, step
        z = z + epsilon * g / g_norm
        z = z * torch.clamp(epsilon / z.norm(), max=1.0)
    return max(best, objective.loss(theta + z).item()), steps


def valley_width(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    height: float | None = None,
    directions: torch.Tensor | None = None,
    n_directions: int = 10,
    max_distance: float = 10.0,
    seed: int = 0,
    scan_points: int = 64,
    *,
    dtype: torch.dtype = torch.float64,
) -> ValleyWidth:
    """Width of the loss valley at ``height`` above ``L(theta)`` along unit directions.

    Along each direction d the distance t > 0 at which ``L(theta + t d) - L(theta)`` first
    reaches ``height`` is found in both senses (+d, -d): a scan of ``scan_points`` equally
    spaced distances up to ``max_distance`` brackets the first crossing, then bisection
    refines it. The width is ``t_plus + t_minus`` (eval mode, float64 by default).

    Args:
        model, loss_fn, x, y: the model, the loss and its data, as for :func:`sharpness`.
        height: loss increase (> 0) that defines the valley's edge (required).
        directions: (m, P) directions (normalized here); ``None``: ``n_directions`` seeded
            Gaussian directions.
        n_directions: how many random directions when ``directions`` is ``None``.
        max_distance: farthest distance searched along each direction.
        seed: seeds the random directions.
        scan_points: distances in the bracketing scan; a rise narrower than
            ``max_distance / scan_points`` that falls back below ``height`` can be missed.
        dtype: precision of the computation.

    Returns:
        ``ValleyWidth``.
    """
    if height is None:
        raise DlprobeError("height is required: the loss increase that defines the valley edge")
    if not height > 0 or not math.isfinite(height):
        raise DlprobeError(f"height must be a positive finite number, got {height!r}")
    if not max_distance > 0 or not math.isfinite(max_distance):
        raise DlprobeError(f"max_distance must be a positive finite number, got {max_distance!r}")
    if isinstance(scan_points, bool) or not isinstance(scan_points, int) or scan_points < 1:
        raise DlprobeError(f"scan_points must be a positive int, got {scan_points!r}")
    check_dtype(dtype)
    with eval_mode(model):
        objective = Objective(model, loss_fn, x, y, dtype=dtype)
        theta = objective.theta  # (P,)
        d = _unit_directions(directions, n_directions, theta, seed)  # (m, P)
        base = objective.loss(theta)
        signed = torch.cat([d, -d])  # (2m, P): +d then -d
        chunk = default_columns(objective.n_params)

        def rise(t: torch.Tensor) -> torch.Tensor:
            """Loss increase at distances t (2m,) along each signed direction."""
            points = theta + t.unsqueeze(1) * signed  # (2m, P)
            return objective.losses(points, chunk) - base  # (2m,)

        # Scan outwards one distance at a time (memory (2m, P)) until every signed
        # direction has crossed the height; first[i] = index of its first crossing.
        step = max_distance / scan_points
        first = torch.full((signed.shape[0],), -1, device=theta.device)  # (2m,)
        for k in range(scan_points):
            up = rise(torch.full_like(first, (k + 1) * step, dtype=dtype)) >= height
            first = torch.where((first < 0) & up, k, first)
            if (first >= 0).all():
                break
        reached = first >= 0  # (2m,)
        lo = first.clamp(min=0).to(dtype) * step  # (2m,) below the height (0 at theta itself)
        hi = lo + step  # (2m,) at or above it where reached
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            up = rise(mid) >= height  # (2m,)
            hi = torch.where(up, mid, hi)
            lo = torch.where(up, lo, mid)
    t = torch.where(reached, hi, torch.full_like(hi, math.inf))  # (2m,)
    m = d.shape[0]
    distances = torch.stack([t[:m], t[m:]], dim=1)  # (m, 2)
    widths = distances.sum(dim=1)  # (m,)
    return ValleyWidth(
        widths=widths,
        distances=distances,
        reached=torch.stack([reached[:m], reached[m:]], dim=1),
        mean=widths.mean().item(),
        height=float(height),
        directions=d,
    )


def _unit_directions(directions, n_directions: int, theta: torch.Tensor, seed: int):
    """Given (m, P) directions normalized, or ``n_directions`` seeded Gaussian ones."""
    p = theta.numel()
    if directions is None:
        if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
            raise DlprobeError(f"n_directions must be a positive int, got {n_directions!r}")
        gen = torch.Generator().manual_seed(seed)  # on the CPU: the same on every device
        directions = torch.randn(n_directions, p, generator=gen, dtype=torch.float64)
    if not isinstance(directions, torch.Tensor) or directions.ndim != 2:
        raise DlprobeError("directions must be a tensor of shape (m, P)")
    if directions.shape[1] != p or directions.shape[0] == 0:
        raise DlprobeError(
            f"directions must have shape (m >= 1, {p}), got {tuple(directions.shape)}"
        )
    d = directions.detach().to(device=theta.device, dtype=theta.dtype)
    norms = d.norm(dim=1, keepdim=True)  # (m, 1)
    if (norms == 0).any():
        raise DlprobeError("directions must be non-zero")
    return d / norms

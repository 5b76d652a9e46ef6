"""Loss landscapes: the loss along one or two directions, or on the plane through three models.

Random directions follow Li et al. (2018), "Visualizing the Loss Landscape of Neural Nets":
each filter of the direction (a row of a Linear weight, i.e. one output unit; an output
channel of a Conv weight) is rescaled to the norm of the same filter of the weights, so
that plots of networks with different weight scales are comparable. Like Li et al.
("ignore biases"), biases and every other 1-D parameter (BatchNorm scales and shifts)
are zero in the direction: the surface moves only the weight matrices and kernels.

Grid points are evaluated in batches: the loss, as a function of the flat parameter
vector (P,), is vmapped over stacked parameter vectors, ``chunk_size`` at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    check_data,
    eval_mode,
    flat_loss_fn,
    flat_params,
    unflatten,
)


@dataclass(frozen=True)
class Surface:
    """Loss on a 1-D or 2-D grid around a center point.

    Attributes:
        coords: one array (1-D surface) or two arrays (2-D surface) of grid coordinates.
        loss: shape ``(len(coords[0]),)`` or ``(len(coords[0]), len(coords[1]))``;
            ``loss[i, j]`` is at ``center + coords[0][i] d1 + coords[1][j] d2`` ('ij'
            indexing: transpose it for ``plt.contour(x, y, z)``).
        directions: (k, P) the directions d1 (, d2) of the grid axes.
        center_loss: loss at the center (coordinates 0).
        points: (3, 2) plane coordinates of the three models (``loss_on_plane`` only).
    """

    coords: tuple[np.ndarray, ...]
    loss: np.ndarray
    directions: torch.Tensor
    center_loss: float
    points: np.ndarray | None = None


@dataclass(frozen=True)
class Plane:
    """The plane through three parameter vectors a, b, c.

    Attributes:
        origin: (P,) the point a.
        basis: (2, P) orthonormal rows u = (b - a)/|b - a| and v (Gram-Schmidt of c - a).
        coords: (3, 2) coordinates of a, b, c: ``origin + coords[i] @ basis`` is point i.
    """

    origin: torch.Tensor
    basis: torch.Tensor
    coords: np.ndarray


def filter_normalize(model: nn.Module, direction: torch.Tensor) -> torch.Tensor:
    """Li et al. filter normalization of a direction (P,) in the model's parameter space.

    Each filter (first-axis slice of a parameter with >= 2 dimensions) is rescaled to the
    norm of the model's corresponding filter; 1-D parameters (biases, BatchNorm) are set to
    zero. Returns a new tensor; ``direction`` is not modified.
    """
    _check_vector(direction, flat_params(model).numel(), "direction")
    return _normalize_filters(model, direction)


def _normalize_filters(model: nn.Module, direction: torch.Tensor) -> torch.Tensor:
    parts = unflatten(model, direction)
    out = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        d = parts[name]
        if p.ndim <= 1:
            out.append(torch.zeros_like(d).reshape(-1))
            continue
        w = p.detach().reshape(p.shape[0], -1)  # (filters, fan_in)
        d = d.reshape(p.shape[0], -1)  # (filters, fan_in)
        scale = w.norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True).clamp_min(1e-30)
        out.append((d * scale).reshape(-1))
    return torch.cat(out)  # (P,)


def random_directions(
    model: nn.Module, n: int, filter_normalize: bool = True, seed: int = 0
) -> list[torch.Tensor]:
    """``n`` seeded Gaussian directions (P,) in the model's parameter space.

    Args:
        model: supplies the parameter layout, dtype and device (and, for normalization,
            the filter norms).
        n: number of directions.
        filter_normalize: apply Li et al. filter normalization (see module docstring);
            otherwise each entry is standard normal.
        seed: the directions depend only on it (drawn on the CPU, then moved).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DlprobeError(f"n must be a positive int, got {n!r}")
    theta = flat_params(model)
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, theta.numel(), generator=gen, dtype=torch.float64)
    raw = raw.to(device=theta.device, dtype=theta.dtype)  # (n, P)
    if filter_normalize:
        return [_normalize_filters(model, d) for d in raw]
    return list(raw)


def loss_surface(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: Sequence[torch.Tensor] | torch.Tensor | None = None,
    grid: Sequence[float] | np.ndarray | None = None,
    filter_normalize: bool = True,
    seed: int = 0,
    chunk_size: int = 64,
) -> Surface:
    """Loss at ``theta + a d1`` (1 direction) or ``theta + a d1 + b d2`` (2 directions).

    Args:
        model, loss_fn, x, y: the model (its parameters are the center theta) and the data
            of the loss, evaluated in eval mode in the model's dtype.
        directions: 1 or 2 directions (P,), as a sequence or a (k, P) tensor. ``None``:
            two ``random_directions(model, 2, filter_normalize, seed)``.
        grid: coordinates along each direction; default 21 points in [-1, 1].
        filter_normalize, seed: only for the random directions drawn when ``directions``
            is ``None``.
        chunk_size: grid points evaluated per vmapped batch (memory only).

    Returns:
        ``Surface`` with ``loss`` of shape (G,) or (G, G).
    """
    check_data(model, x, y)
    theta = flat_params(model)
    if directions is None:
        directions = random_directions(model, 2, filter_normalize, seed)
    d = _direction_matrix(directions, theta)  # (k, P)
    axis = _grid(np.linspace(-1, 1, 21) if grid is None else grid, "grid")
    axes = (axis,) * d.shape[0]
    losses, center = _losses_on_grid(model, loss_fn, x, y, theta, d, axes, chunk_size)
    return Surface(axes, losses, d, center)


def plane_through(theta_a: torch.Tensor, theta_b: torch.Tensor, theta_c: torch.Tensor) -> Plane:
    """Origin, orthonormal basis (Gram-Schmidt, in float64) and 2-D coordinates of the
    plane through three flat parameter vectors (P,); tensors are returned in a's dtype."""
    if not isinstance(theta_a, torch.Tensor) or theta_a.ndim != 1:
        raise DlprobeError("theta_a must be a flat parameter vector (P,)")
    for name, t in [("theta_b", theta_b), ("theta_c", theta_c)]:
        _check_vector(t, theta_a.numel(), name)
    a, b, c = (
        t.detach().to(device=theta_a.device, dtype=torch.float64)
        for t in (theta_a, theta_b, theta_c)
    )
    u = b - a
    if u.norm() == 0:
        raise DlprobeError("theta_a and theta_b are equal; the three points span no plane")
    u = u / u.norm()
    v = (c - a) - ((c - a) @ u) * u
    if v.norm() <= 1e-12 * max((b - a).norm().item(), (c - a).norm().item()):
        raise DlprobeError("the three points are collinear; they span no plane")
    v = v / v.norm()
    basis = torch.stack([u, v])  # (2, P)
    coords = (torch.stack([a, b, c]) - a) @ basis.T  # (3, 2)
    return Plane(theta_a.detach().clone(), basis.to(theta_a.dtype), coords.cpu().numpy())


def loss_on_plane(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    thetas: Sequence[torch.Tensor],
    grid_x: Sequence[float] | np.ndarray,
    grid_y: Sequence[float] | np.ndarray,
    chunk_size: int = 64,
) -> Surface:
    """Loss on the plane through three parameter vectors of ``model``'s architecture.

    Args:
        model: supplies the architecture and buffers; its own parameters are not used.
        loss_fn, x, y: the loss and data (eval mode, in the model's dtype).
        thetas: three flat parameter vectors (P,), e.g. ``flat_params`` of three models.
        grid_x, grid_y: plane coordinates (same units as parameter space) along the basis
            vectors u and v of ``plane_through``; the origin is ``thetas[0]``.
        chunk_size: grid points evaluated per vmapped batch (memory only).

    Returns:
        ``Surface`` with ``loss`` (len(grid_x), len(grid_y)), ``directions`` the basis,
        ``center_loss`` the loss at ``thetas[0]`` and ``points`` the three coordinates.
    """
    check_data(model, x, y)
    if len(thetas) != 3:
        raise DlprobeError(f"thetas must be three parameter vectors, got {len(thetas)}")
    p = flat_params(model)
    for i, t in enumerate(thetas):
        _check_vector(t, p.numel(), f"thetas[{i}]")
    plane = plane_through(*thetas)
    origin = plane.origin.to(device=p.device, dtype=p.dtype)
    basis = plane.basis.to(device=p.device, dtype=p.dtype)
    axes = (_grid(grid_x, "grid_x"), _grid(grid_y, "grid_y"))
    losses, center = _losses_on_grid(model, loss_fn, x, y, origin, basis, axes, chunk_size)
    return Surface(axes, losses, basis, center, plane.coords)


def project_onto_directions(
    points: torch.Tensor,
    center: torch.Tensor,
    directions: Sequence[torch.Tensor] | torch.Tensor,
) -> np.ndarray:
    """Coordinates (m, k) of points (m, P) in the span of k directions around ``center``.

    Least squares (float64): ``coords[i]`` minimizes ``|| center + coords[i] @ D - points[i] ||``
    with D the (k, P) directions, so a training trajectory can be drawn on a surface.
    """
    if not isinstance(points, torch.Tensor) or points.ndim != 2:
        raise DlprobeError("points must be a tensor of shape (m, P)")
    _check_vector(center, points.shape[1], "center")
    center = center.detach().to(torch.float64)
    d = _direction_matrix(directions, center, max_k=None)  # (k, P) float64
    if torch.linalg.matrix_rank(d).item() < d.shape[0]:
        raise DlprobeError("directions must be linearly independent")
    offsets = points.detach().to(device=center.device, dtype=torch.float64) - center  # (m, P)
    solution = torch.linalg.lstsq(d.T, offsets.T).solution  # (k, m)
    return solution.T.cpu().numpy()


def _losses_on_grid(model, loss_fn, x, y, center, d, axes, chunk_size):
    """Loss at ``center + coords @ d`` for the product grid of ``axes``; and at ``center``."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise DlprobeError(f"chunk_size must be a positive int, got {chunk_size!r}")
    mesh = np.meshgrid(*axes, indexing="ij")
    coords = torch.as_tensor(np.stack([m.reshape(-1) for m in mesh], axis=1))  # (G, k)
    coords = coords.to(device=center.device, dtype=center.dtype)
    with eval_mode(model), torch.no_grad():
        f = flat_loss_fn(model, loss_fn, x, y)
        batched = vmap(f)
        chunks = [
            batched(center + c @ d)  # (c, k) @ (k, P) -> (c, P) parameter vectors -> (c,)
            for c in coords.split(chunk_size)
        ]
        center_loss = f(center).item()
    losses = torch.cat(chunks).cpu().numpy().reshape(mesh[0].shape)
    return losses, center_loss


def _direction_matrix(directions, theta: torch.Tensor, max_k: int | None = 2) -> torch.Tensor:
    """Directions as a (k, P) tensor on theta's device and dtype, checked."""
    if isinstance(directions, torch.Tensor):
        if directions.ndim != 2:
            raise DlprobeError("directions must be a (k, P) tensor or a sequence of (P,) tensors")
        directions = list(directions)
    directions = list(directions)
    k = len(directions)
    if k == 0 or (max_k is not None and k > max_k):
        allowed = "1 or 2" if max_k == 2 else "at least 1"
        raise DlprobeError(f"need {allowed} directions, got {k}")
    for i, v in enumerate(directions):
        _check_vector(v, theta.numel(), f"directions[{i}]")
    return torch.stack([v.detach().to(device=theta.device, dtype=theta.dtype) for v in directions])


def _check_vector(v, p: int, name: str) -> None:
    if not isinstance(v, torch.Tensor) or v.ndim != 1 or v.numel() != p or p == 0:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise DlprobeError(f"{name} must be a flat parameter vector of shape ({p},), got {shape}")


def _grid(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise DlprobeError(f"{name} must be a non-empty 1-D sequence of finite coordinates")
    return arr

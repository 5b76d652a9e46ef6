"""Linear regions of a ReLU network on the plane through three inputs (Novak et al. 2018).

A ReLU network is affine on each set of inputs that share one activation pattern (which
hidden units are on, and which input each max-pooling window picks). Given the pattern
every pre-activation is affine in the input, so each such set is a convex polytope. We
sample a grid on the 2-D plane through three inputs, record every grid point's pattern
over all ReLU/LeakyReLU units and MaxPool windows, and number the distinct patterns:
points with the same id lie in the same linear region.

Only modules are seen. A non-linearity called in ``forward`` (``torch.tanh(h)``,
``F.relu(h)``) leaves no trace in the pattern, so the grid is evaluated in float64 and
checked: wherever three consecutive grid points share a pattern the output must be
affine along them (zero second difference, up to round-off); otherwise the model is
refused.

The plane has origin x1 and the orthonormal basis (e1, e2) obtained by Gram-Schmidt from
(x2 - x1, x3 - x1); plane coordinates (u, v) stand for ``x1 + u e1 + v e2``. The grid
covers the bounding box of the three anchors in these coordinates, pushed out on every
side by ``extent`` times the box's longer side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dlprobe import DlprobeError
from dlprobe.measure._functional import check_data, eval_mode

# Units whose state defines the pattern: the sign of a ReLU's input, the position of
# the maximum in each max-pooling window.
SIGN_UNITS = (nn.ReLU, nn.LeakyReLU)
MAX_POOLS = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d}
PATTERN_UNITS = (*SIGN_UNITS, *MAX_POOLS)
# Affine in eval mode: they add no region boundaries.
AFFINE = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)
# Largest second difference of the output along three same-pattern grid points, relative
# to the largest output, that float64 round-off explains; a hidden tanh gives ~1e-6.
AFFINE_RTOL = 1e-9
GRID_CHUNK = 16384  # grid points per forward pass


@dataclass(frozen=True)
class LinearRegions:
    """Region ids on a grid of the plane through three inputs.

    ``region_ids[i, j]`` is the id of the point with plane coordinates
    ``(grid_coords[0][j], grid_coords[1][i])`` (rows are v, as for
    ``imshow(origin="lower")``); ids are numbered 0, 1, ... in order of first occurrence
    in row-major order. ``anchor_coords`` (3, 2) are (u, v) of x1, x2, x3.
    """

    grid_coords: tuple[np.ndarray, np.ndarray]
    region_ids: np.ndarray
    n_regions: int
    anchor_coords: np.ndarray


def _check_piecewise_linear(model: nn.Module) -> list[nn.Module]:
    units = []
    for name, m in model.named_modules():
        if isinstance(m, PATTERN_UNITS):
            units.append(m)
        elif not list(m.children()) and not isinstance(m, AFFINE):
            raise DlprobeError(
                f"linear regions need a network of affine layers, ReLU/LeakyReLU "
                f"activations and max pooling; module {name!r} is {type(m).__name__}"
            )
    if not any(isinstance(m, SIGN_UNITS) for m in units):
        raise DlprobeError("the model has no ReLU/LeakyReLU unit, so it has one linear region")
    return units


def _plane(x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor):
    """Orthonormal in-plane basis (2, D) by Gram-Schmidt, and the anchors' (u, v) (3, 2)."""
    if not all(isinstance(x, torch.Tensor) and x.is_floating_point() for x in (x1, x2, x3)):
        raise DlprobeError("x1, x2, x3 must be floating-point torch.Tensors (single inputs)")
    if not (x1.shape == x2.shape == x3.shape):
        raise DlprobeError(
            f"x1, x2, x3 must have the same shape, got {tuple(x1.shape)}, {tuple(x2.shape)}, "
            f"{tuple(x3.shape)}"
        )
    a = (x2 - x1).reshape(-1).to(torch.float64)  # (D,)
    b = (x3 - x1).reshape(-1).to(torch.float64)
    if a.norm() == 0:
        raise DlprobeError("x1 and x2 are the same point; they cannot span a plane")
    e1 = a / a.norm()
    b_perp = b - (b @ e1) * e1
    if b_perp.norm() <= 1e-9 * max(a.norm().item(), b.norm().item()):
        raise DlprobeError("x1, x2, x3 are collinear; they do not span a plane")
    e2 = b_perp / b_perp.norm()
    basis = torch.stack([e1, e2])  # (2, D)
    anchors = torch.stack([torch.zeros_like(basis[:, 0]), basis @ a, basis @ b])  # (3, 2)
    return basis, anchors.cpu().numpy()


def plane_coordinates(
    x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor, points: torch.Tensor
) -> np.ndarray:
    """(M, 2) plane coordinates (u, v), as ``linear_regions`` uses them, of the projections
    of ``points`` (M, ...) onto the plane through x1, x2, x3."""
    basis, _ = _plane(x1, x2, x3)
    flat = points.reshape(len(points), -1).to(torch.float64) - x1.reshape(-1).to(torch.float64)
    return (flat @ basis.T).cpu().numpy()


def linear_regions(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    x3: torch.Tensor,
    resolution: int = 200,
    extent: float = 0.5,
) -> LinearRegions:
    """Number the linear regions of a ReLU network on the plane through x1, x2, x3.

    Args:
        model: a network of affine layers (Linear, Conv, BatchNorm in eval mode, ...),
            ReLU/LeakyReLU activations and MaxPool1d/2d, as modules; evaluated in float64
            and eval mode, left untouched.
        x1, x2, x3: three single inputs (no batch axis), same shape, not collinear,
            on the model's device.
        resolution: grid points per axis.
        extent: margin around the anchors' bounding box, as a fraction of its longer side.

    Returns:
        ``LinearRegions``.

    Raises:
        DlprobeError: a module that is not piecewise linear, or a model that is not
            affine on a region of its recorded pattern (a non-linearity called in
            ``forward`` rather than a module).
    """
    units = _check_piecewise_linear(model)
    if resolution < 2:
        raise DlprobeError(f"resolution must be >= 2, got {resolution}")
    if extent < 0:
        raise DlprobeError(f"extent must be >= 0, got {extent}")
    basis, anchors = _plane(x1, x2, x3)
    check_data(model, x1.unsqueeze(0))
    lo, hi = anchors.min(axis=0), anchors.max(axis=0)
    pad = extent * (hi - lo).max()
    u = np.linspace(lo[0] - pad, hi[0] + pad, resolution)
    v = np.linspace(lo[1] - pad, hi[1] + pad, resolution)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    uv = torch.as_tensor(np.stack([uu.ravel(), vv.ravel()], axis=1), device=x1.device)  # (N, 2)
    origin = x1.reshape(-1).to(torch.float64)
    state = _float64_state(model)

    points = (origin + p @ basis for p in uv.split(GRID_CHUNK))  # chunks of (n, D)
    patterns, outputs = _patterns(model, units, state, points, x1.shape)
    _, first, inverse = np.unique(patterns, axis=0, return_index=True, return_inverse=True)
    # np.unique numbers patterns in sorted order; renumber by first occurrence.
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    ids = rank[inverse.reshape(-1)].reshape(resolution, resolution)
    out = outputs.reshape(resolution, resolution, -1)  # (res, res, outputs)
    _check_affine_on_regions(ids, out)
    return LinearRegions((u, v), ids, len(first), anchors)


def _float64_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """float64 copies of the parameters and buffers: patterns and outputs without float32
    round-off, so that the affinity checks can be strict."""
    return {
        n: t.detach().to(torch.float64) if t.is_floating_point() else t.detach()
        for n, t in (*model.named_parameters(), *model.named_buffers())
    }


def _patterns(
    model: nn.Module, units: list[nn.Module], state: dict, chunks, shape: torch.Size
) -> tuple[np.ndarray, torch.Tensor]:
    """(patterns as rows of bytes (N, bytes), float64 outputs (N, k)) of ``model`` at the
    points of ``chunks`` (an iterable of (n, D) flat float64 inputs), in eval mode."""
    parts: list[torch.Tensor] = []

    def record(module: nn.Module, inputs: tuple, _output) -> None:
        pre = inputs[0]  # (n, ...); an in-place ReLU leaves the same signs
        if isinstance(module, SIGN_UNITS):
            parts.append(pre.reshape(len(pre), -1) > 0)  # (n, units of this layer)
            return
        pool = MAX_POOLS[type(module)]
        _, where = pool(
            pre,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            ceil_mode=module.ceil_mode,
            return_indices=True,
        )
        parts.append(where.reshape(len(pre), -1))  # (n, windows): index of each maximum

    hooks = [m.register_forward_hook(record) for m in units]
    patterns, outputs = [], []
    try:
        with eval_mode(model), torch.no_grad():
            for points in chunks:
                out = functional_call(model, state, (points.reshape(len(points), *shape),))
                outputs.append(out.reshape(len(points), -1))  # (n, outputs)
                patterns.append(_pattern_bytes(parts))  # (n, bytes)
                parts.clear()
    finally:
        for h in hooks:
            h.remove()
    return np.concatenate(patterns), torch.cat(outputs)


@dataclass(frozen=True)
class PathTransitions:
    """Where a closed path crosses from one linear region into another.

    ``changes[i]`` is True when the activation pattern at point i differs from that at
    point i + 1 (the last point is followed by the first); ``lengths[i]`` is the length of
    that segment (input units). ``n_transitions`` = ``changes.sum()``.
    """

    changes: np.ndarray  # (M,) bool
    lengths: np.ndarray  # (M,) float
    n_transitions: int


def path_transitions(model: nn.Module, points: torch.Tensor) -> PathTransitions:
    """Linear-region transitions along the closed path through ``points`` (Novak et al.
    2018 count them along an ellipse through three training inputs).

    Args:
        model: a network of affine layers and ReLU/LeakyReLU/MaxPool modules (see
            ``linear_regions``); evaluated in float64 and eval mode, left untouched.
        points: (M, ...) M >= 3 inputs in order along the path, on the model's device. A
            transition between two consecutive points is seen when their patterns differ
            (two crossings between them count once: sample finely).

    Returns:
        ``PathTransitions``.
    """
    units = _check_piecewise_linear(model)
    if points.dim() < 2 or len(points) < 3:
        raise DlprobeError(f"points must be (M, ...) with M >= 3, got shape {tuple(points.shape)}")
    check_data(model, points[:1])
    flat = points.reshape(len(points), -1).to(torch.float64)  # (M, D)
    patterns, _ = _patterns(
        model, units, _float64_state(model), flat.split(GRID_CHUNK), points.shape[1:]
    )
    changes = (patterns != np.roll(patterns, -1, axis=0)).any(axis=1)  # (M,)
    lengths = (flat.roll(-1, 0) - flat).norm(dim=1).cpu().numpy()  # (M,)
    return PathTransitions(changes, lengths, int(changes.sum()))


def _pattern_bytes(parts: list[torch.Tensor]) -> np.ndarray:
    """One row of bytes per point: the ReLU signs packed 8 to a byte, then the max-pool
    indices as 4-byte integers."""
    signs = [p for p in parts if p.dtype == torch.bool]
    where = [p for p in parts if p.dtype != torch.bool]
    rows = [np.packbits(torch.cat(signs, dim=1).cpu().numpy(), axis=1)]
    if where:
        indices = torch.cat(where, dim=1).to(torch.int32).cpu().numpy()
        rows.append(indices.view(np.uint8))
    return np.concatenate(rows, axis=1)


def _check_affine_on_regions(ids: np.ndarray, out: torch.Tensor) -> None:
    """Refuse a model whose output curves inside one region (see the module docstring).

    ``ids`` (res, res) region ids and ``out`` (res, res, k) float64 outputs on the grid.
    A region is convex, so three consecutive grid points with one id span a segment in
    it, along which an affine output has a zero second difference.
    """
    same = torch.as_tensor(ids, device=out.device)
    worst = 0.0
    for axis in (0, 1):
        a, b, c = (same.narrow(axis, i, same.shape[axis] - 2) for i in range(3))
        fa, fb, fc = (out.narrow(axis, i, out.shape[axis] - 2) for i in range(3))
        inside = (a == b) & (b == c)  # (res - 2, res) or (res, res - 2)
        second = (fa - 2 * fb + fc).abs().amax(dim=-1)
        if inside.any():
            worst = max(worst, float(second[inside].max()))
    scale = float(out.abs().max())
    if worst > AFFINE_RTOL * max(scale, 1e-300):
        raise DlprobeError(
            "the model is not affine inside a region of its ReLU/MaxPool pattern (second "
            f"difference {worst:.3g} on outputs up to {scale:.3g}): it applies a "
            "non-linearity that is not a module, e.g. torch.tanh or F.relu called in "
            "forward. Use nn.ReLU / nn.LeakyReLU / nn.MaxPool modules for every "
            "non-linearity."
        )


def region_sizes(regions: LinearRegions) -> np.ndarray:
    """Number of grid points in each region, indexed by region id (n_regions,)."""
    return np.bincount(regions.region_ids.ravel(), minlength=regions.n_regions)


def mean_region_size_near_anchors(regions: LinearRegions, radius: float) -> tuple[float, float]:
    """Mean size (grid points) of the region containing each grid point, near vs. far.

    Averages, over the grid points within ``radius`` (plane units) of any anchor, the
    size of the region each lies in; then the same over all other grid points. NaN for
    an empty group.

    Returns:
        ``(near, elsewhere)``.
    """
    if radius <= 0:
        raise DlprobeError(f"radius must be > 0, got {radius}")
    u, v = regions.grid_coords
    vv, uu = np.meshgrid(v, u, indexing="ij")  # (res, res) each, rows are v
    grid = np.stack([uu, vv], axis=-1)  # (res, res, 2)
    dist = np.linalg.norm(grid[:, :, None, :] - regions.anchor_coords, axis=-1).min(axis=-1)
    size_at = region_sizes(regions)[regions.region_ids]  # (res, res)
    near = dist <= radius
    return (
        float(size_at[near].mean()) if near.any() else float("nan"),
        float(size_at[~near].mean()) if (~near).any() else float("nan"),
    )

"""A model as a function of one flat parameter vector: what each entry is, where a module's
entries lie, the loss at many vectors at once (moved one entry at a time, or by Gaussian
noise), and where a path of vectors lies on a plane.

The flat vector is in ``parameters()`` order, as ``nn.utils.parameters_to_vector`` and
training snapshots store it. The loss at N vectors is one vmapped ``functional_call`` per
chunk, so probing a tiny model at thousands of nearby points (error-surface) costs a few
batched forward passes, not thousands of model copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import LossFn, check_data, eval_mode, flat_loss_fn, flat_params
from dlprobe.measure.surface import project_onto_directions


def parameter_names(model: nn.Module) -> list[str]:
    """A name for every entry of the flat vector: ``W2[i,j]`` / ``b2[i]`` for the weight and
    bias of the model's second ``nn.Linear``; ``NAME[i,...]`` for any other parameter."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = []
    for pname, p in model.named_parameters():
        module, kind = pname.rsplit(".", 1) if "." in pname else ("", pname)
        if module in linears and kind in ("weight", "bias"):
            symbol = f"{'W' if kind == 'weight' else 'b'}{linears.index(module) + 1}"
        else:
            symbol = pname
        names += [f"{symbol}[{','.join(map(str, idx))}]" for idx in np.ndindex(*p.shape)]
    return names


def parameter_slice(model: nn.Module, module: nn.Module) -> slice:
    """Where ``module``'s parameters (a submodule of ``model``) lie in the flat vector."""
    mine = {id(p) for p in module.parameters()}
    if not mine:
        raise DlprobeError(f"{type(module).__name__} has no parameters")
    start, inside = 0, []
    for p in model.parameters():
        if id(p) in mine:
            inside.append((start, start + p.numel()))
        start += p.numel()
    if len(inside) != len(mine):
        raise DlprobeError(f"{type(module).__name__} is not a submodule of the model")
    lo, hi = inside[0][0], inside[-1][1]
    if hi - lo != sum(b - a for a, b in inside):
        raise DlprobeError("the module's parameters are not contiguous in the flat vector")
    return slice(lo, hi)


def losses_at(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    thetas: torch.Tensor,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The loss of ``model``'s architecture with parameters ``thetas[i]``, for every i.

    Args:
        model: supplies the architecture (and buffers); its own parameters are not used
            and nothing of it changes. Evaluated in eval mode.
        loss_fn, x, y: the loss of (outputs, targets) and the data.
        thetas: (N, P) flat parameter vectors on the model's device.
        chunk_size: vectors per vmapped batch (memory only).

    Returns:
        (N,) losses, detached.
    """
    check_data(model, x, y)
    p = flat_params(model).numel()
    if not isinstance(thetas, torch.Tensor) or thetas.ndim != 2 or thetas.shape[1] != p:
        shape = tuple(thetas.shape) if isinstance(thetas, torch.Tensor) else type(thetas).__name__
        raise DlprobeError(f"thetas must be a tensor (N, {p}) of flat parameters, got {shape}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise DlprobeError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if thetas.shape[0] == 0:
        return thetas.new_zeros(0)
    with eval_mode(model), torch.no_grad():
        batched = vmap(flat_loss_fn(model, loss_fn, x, y))
        return torch.cat([batched(chunk) for chunk in thetas.split(chunk_size)])


def one_parameter_losses(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    deltas: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """(P, G): the loss when parameter i alone moves by ``deltas[g]`` from the model's value.

    Every other parameter stays where it is; a delta of 0 gives the model's own loss.
    """
    theta = flat_params(model)  # (P,)
    deltas = torch.as_tensor(deltas, dtype=theta.dtype, device=theta.device).reshape(-1)  # (G,)
    if deltas.numel() == 0 or not torch.isfinite(deltas).all():
        raise DlprobeError("deltas must be a non-empty sequence of finite numbers")
    eye = torch.eye(theta.numel(), device=theta.device, dtype=theta.dtype)  # (P, P)
    moved = theta + deltas[None, :, None] * eye[:, None, :]  # (P, G, P)
    losses = losses_at(model, loss_fn, x, y, moved.reshape(-1, theta.numel()))
    return losses.reshape(theta.numel(), deltas.numel())


def gaussian_perturbations(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: Sequence[float],
    per_radius: int,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss at Gaussian perturbations of the model's parameters theta (P,).

    For each radius r, ``per_radius`` points theta + r * N(0, I), the noise drawn on the CPU
    from a generator seeded with ``seed`` (one (R, per_radius, P) draw).

    Returns:
        ``(points (N, P) on the CPU, radius (N,), loss (N,))`` with N = R * per_radius,
        grouped by radius in the given order.
    """
    r = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
    if r.numel() == 0 or not bool(torch.isfinite(r).all() and (r > 0).all()):
        raise DlprobeError(f"radii must be positive finite numbers, got {list(radii)}")
    if isinstance(per_radius, bool) or not isinstance(per_radius, int) or per_radius < 1:
        raise DlprobeError(f"per_radius must be a positive int, got {per_radius!r}")
    theta = flat_params(model).cpu()  # (P,)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(r.numel(), per_radius, theta.numel(), generator=gen)  # (R, n, P)
    scale = r.to(torch.float32)[:, None, None]  # (R, 1, 1)
    points = (theta + scale * noise.to(theta.dtype)).reshape(-1, theta.numel())  # (N, P)
    losses = losses_at(model, loss_fn, x, y, points.to(x.device))
    return points, r.repeat_interleave(per_radius), losses


def plane_shadow(
    points: torch.Tensor, center: torch.Tensor, directions: Sequence[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where points (T, P) lie on the plane through ``center`` (P,) spanned by ``directions``
    (k of them, (P,) each): their plane coordinates (T, k) (least squares, see
    ``surface.project_onto_directions``), the length of each offset ``point - center`` (T,),
    and the length of its projection on the plane (T,), in float64. The ratio of the last
    two says how much of a path a drawing on the plane shows."""
    coords = project_onto_directions(points, center, directions)  # (T, k)
    offsets = points.detach().to(center.device, torch.float64) - center.to(torch.float64)
    d = torch.stack([v.detach().to(offsets) for v in directions])  # (k, P)
    in_plane = torch.as_tensor(coords, device=d.device) @ d  # (T, P)
    return coords, offsets.norm(dim=1).cpu().numpy(), in_plane.norm(dim=1).cpu().numpy()

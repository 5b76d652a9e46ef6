"""Exact loss Hessians of small models and their eigenvalues, in float64.

The Hessian is taken over all trainable parameters as one flat vector (P,), in
``named_parameters`` order, so its blocks line up with ``flat_params(model)``. It is
computed in float64 by default: on ReLU networks many eigenvalues are exactly zero
(dead units, piecewise-linear regions) and float32 round-off would scatter them to
either sign, which wrecks the minimal ratio (fraction of positive eigenvalues).
Memory is P^2 per model, so this is for models up to a few thousand parameters; use
``dlprobe.measure.curvature`` beyond that.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import LossFn, check_data, eval_mode, flat_loss_fn, flat_params
from dlprobe.measure.gradient import population_loss_fn


def _check_dtype(dtype: torch.dtype) -> None:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise DlprobeError(
            f"dtype must be a floating torch.dtype such as torch.float64, got {dtype}"
        )


def _symmetric_eigvalsh(h: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of (..., P, P) Hessians, symmetrized, in float64."""
    h = h.to(torch.float64)
    return torch.linalg.eigvalsh((h + h.transpose(-1, -2)) / 2)


def hessian(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Exact Hessian of the mean loss over all trainable parameters.

    Args:
        model: any ``nn.Module``; evaluated in eval mode, never modified (its parameters,
            buffers and the data are cast to ``dtype`` on the fly).
        loss_fn: ``loss_fn(output, target) -> scalar mean``.
        x, y: the data.
        dtype: precision of the whole computation (default float64).

    Returns:
        (P, P) tensor in ``dtype`` on the model's device.
    """
    check_data(model, x, y)
    _check_dtype(dtype)
    with eval_mode(model):
        f = flat_loss_fn(model, loss_fn, x, y, dtype)
        return torch.func.hessian(f)(flat_params(model, dtype)).detach()  # (P, P)


def hessian_eigenvalues(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """All eigenvalues of the float64 loss Hessian (see :func:`hessian`), ascending.

    Returns:
        (P,) float64 tensor.
    """
    return _symmetric_eigvalsh(hessian(model, loss_fn, x, y))


def population_hessian(
    base_model: nn.Module,
    stacked_params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype = torch.float64,
    stacked_buffers: dict[str, torch.Tensor] | None = None,
    chunk_size: int | None = 16,
) -> torch.Tensor:
    """:func:`hessian` of each of K stacked models (shared data), vmapped over models.

    Args:
        base_model: a model of the population's architecture (its values are not used;
            it may be on the ``meta`` device if ``stacked_buffers`` are given).
        stacked_params: ``{name: (K, *shape)}`` as made by ``torch.func.stack_module_state``.
        loss_fn, x, y, dtype: as for :func:`hessian`.
        stacked_buffers: ``{name: (K, *shape)}``; default: ``base_model``'s buffers for all.
        chunk_size: models per vmapped batch (None: all K at once). Bounds memory, and
            on CPU batches of 10-20 small MLPs ran 2-3x faster than all 100 at once.

    Returns:
        (K, P, P) tensor in ``dtype``.
    """
    _check_dtype(dtype)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise DlprobeError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    f, thetas, bufs, bdim = population_loss_fn(
        base_model, stacked_params, loss_fn, x, y, stacked_buffers, dtype
    )
    with eval_mode(base_model):
        h = vmap(torch.func.hessian(f), in_dims=(0, bdim), chunk_size=chunk_size)
        return h(thetas, bufs).detach()  # (K, P, P)


def population_hessian_eigenvalues(
    base_model: nn.Module,
    stacked_params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    stacked_buffers: dict[str, torch.Tensor] | None = None,
    chunk_size: int | None = 16,
) -> torch.Tensor:
    """Ascending float64 Hessian eigenvalues of each of K stacked models.

    Args: as for :func:`population_hessian`.

    Returns:
        (K, P) float64 tensor, row k ascending.
    """
    h = population_hessian(
        base_model,
        stacked_params,
        loss_fn,
        x,
        y,
        stacked_buffers=stacked_buffers,
        chunk_size=chunk_size,
    )
    return _symmetric_eigvalsh(h)  # (K, P)

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

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.func import vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    Objective,
    check_dtype,
    default_columns,
    eval_mode,
    quiet_forward_ad,
)
from dlprobe.measure.gradient import population_loss_fn


def _symmetric_eigh(h: torch.Tensor, vectors: bool = False):
    """Ascending eigenvalues (and eigenvectors) of (..., P, P) Hessians, symmetrized, in
    float64."""
    h = h.to(torch.float64)
    h = (h + h.transpose(-1, -2)) / 2
    return torch.linalg.eigh(h) if vectors else torch.linalg.eigvalsh(h)


def hessian(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    *,
    params: Sequence[str] | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Exact Hessian of the mean loss over all trainable parameters (or a block of them).

    Row by row: ``chunk_size`` rows at a time by reverse-over-reverse autodiff (``jacrev``
    of ``jacrev``, vmapped), per batch, so extra memory is ``chunk_size`` times that of
    one Hessian-vector product on top of the (P, P) result.

    Args:
        model: any ``nn.Module``; evaluated in eval mode, never modified (its parameters,
            buffers and the data are cast to ``dtype`` on the fly).
        loss_fn: ``loss_fn(output, target) -> scalar`` (a mean over the batch, or an
            ``nn.Module`` loss with ``reduction="mean"`` or ``"sum"``).
        x, y: inputs and targets (two tensors on the model's device), or ``x`` an
            iterable of ``(x, y)`` batches such as a ``DataLoader`` and ``y`` omitted.
        dtype: precision of the whole computation (default float64).
        params: names of the parameters whose Hessian block is taken, as in
            ``model.named_parameters()`` (default: all trainable parameters).
        chunk_size: rows computed at once; ``None``: 32, fewer beyond 32k parameters
            (see ``default_columns``). The result does not depend on it.

    Returns:
        (P, P) tensor in ``dtype`` on the model's device; rows and columns follow the
        chosen parameters in ``named_parameters`` order, each flattened.
    """
    check_dtype(dtype)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise DlprobeError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    with eval_mode(model):
        objective = Objective(model, loss_fn, x, y, params=params, dtype=dtype)
        return objective.hessian_matrix(chunk_size or default_columns(objective.n_params))


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    params: Sequence[str] | None = None,
    chunk_size: int | None = None,
    return_eigenvectors: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """All eigenvalues of the loss Hessian (see :func:`hessian`), ascending, in float64.

    Args: as for :func:`hessian`; ``return_eigenvectors`` also returns the unit
        eigenvectors.

    Returns:
        (P,) float64 tensor; with ``return_eigenvectors`` a pair ``(eigenvalues,
        eigenvectors)``, eigenvectors (P, P) float64 with column i for eigenvalue i.
    """
    h = hessian(model, loss_fn, x, y, dtype, params=params, chunk_size=chunk_size)
    return _symmetric_eigh(h, vectors=return_eigenvectors)


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
    check_dtype(dtype)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise DlprobeError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    f, thetas, bufs, bdim = population_loss_fn(
        base_model, stacked_params, loss_fn, x, y, stacked_buffers, dtype
    )
    with eval_mode(base_model), quiet_forward_ad():
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
    return _symmetric_eigh(h)  # (K, P)

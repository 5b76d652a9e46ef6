"""Gradient norms of the training loss, for one model or a population of models.

A population is K models of one architecture whose parameters are stacked along a
leading axis, as made by ``torch.func.stack_module_state`` (or held by
``dlprobe.train.Population``): ``{name: tensor (K, *shape)}``. The architecture is given
by a ``base_model`` whose own parameter values are never read, so it may live on the
``meta`` device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import (
    LossFn,
    Objective,
    check_data,
    eval_mode,
    param_names,
    unflatten,
)


def gradient_norm(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None = None,
    *,
    dtype: torch.dtype | None = None,
    params: Sequence[str] | None = None,
) -> float:
    """2-norm of the gradient of the mean loss over all trainable parameters.

    Args:
        model: any ``nn.Module``; evaluated in eval mode and left as found.
        loss_fn: ``loss_fn(output, target) -> scalar`` (a mean over the batch, or an
            ``nn.Module`` loss with ``reduction="mean"`` or ``"sum"``).
        x, y: inputs and targets (two tensors on the model's device), or ``x`` an
            iterable of ``(x, y)`` batches such as a ``DataLoader`` and ``y`` omitted;
            the loss is the mean over all examples.
        dtype: precision of the computation; ``None``: the model's own.
        params: names of the parameters to differentiate by, as in
            ``model.named_parameters()`` (default: all trainable parameters).

    Returns:
        ``||grad L(theta)||_2`` as a Python float.
    """
    with eval_mode(model):
        objective = Objective(model, loss_fn, x, y, params=params, dtype=dtype)
        _, g = objective.value_and_grad(objective.theta)  # (P,)
    return float(torch.linalg.vector_norm(g))


def population_flat_params(
    base_model: nn.Module, stacked_params: dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """(K, P): the stacked parameters, one flat row per model in ``named_parameters`` order.

    Raises:
        DlprobeError: names or shapes do not match ``base_model``'s trainable parameters,
            or the models disagree on K.
    """
    if not isinstance(stacked_params, dict) or not stacked_params:
        raise DlprobeError(
            "stacked_params must be a non-empty dict {name: tensor (K, ...)} as made by "
            "torch.func.stack_module_state"
        )
    names = param_names(base_model)
    if set(stacked_params) != set(names):
        missing = sorted(set(names) - set(stacked_params))
        extra = sorted(set(stacked_params) - set(names))
        raise DlprobeError(
            f"stacked_params must have exactly the trainable parameters of base_model; "
            f"missing {missing}, unexpected {extra}"
        )
    shapes = dict(base_model.named_parameters())
    first = stacked_params[names[0]]
    k = first.shape[0] if isinstance(first, torch.Tensor) and first.ndim else 0
    rows = []
    for name in names:
        t = stacked_params[name]
        if not isinstance(t, torch.Tensor):
            raise DlprobeError(f"stacked_params[{name!r}] must be a tensor, got {type(t).__name__}")
        if tuple(t.shape) != (k, *shapes[name].shape):
            raise DlprobeError(
                f"stacked_params[{name!r}] must have shape (K, *{tuple(shapes[name].shape)}) "
                f"with K={k} for every parameter, got {tuple(t.shape)}"
            )
        rows.append(t.detach().reshape(k, -1))
    if k == 0:
        raise DlprobeError("stacked_params holds no models (K = 0)")
    flat = torch.cat(rows, dim=1)  # (K, P)
    return flat if dtype is None else flat.to(dtype)


def population_loss_fn(
    base_model: nn.Module,
    stacked_params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    stacked_buffers: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Callable[..., torch.Tensor], torch.Tensor, dict[str, torch.Tensor], int | None]:
    """Plumbing shared by the population probes: ``(f, thetas, buffers, buffer_dim)``.

    ``f(theta (P,), buffers) -> loss`` evaluates ``base_model`` with one model's flat
    parameters; ``thetas`` is (K, P); ``buffers`` are stacked (``buffer_dim`` 0) or
    shared by all models (``buffer_dim`` None), ready for
    ``vmap(..., in_dims=(0, buffer_dim))``. With ``dtype`` everything is cast to it.
    Call ``f`` inside ``eval_mode(base_model)``.
    """
    thetas = population_flat_params(base_model, stacked_params, dtype)  # (K, P)
    check_data(nn.Module(), x, y)  # types and sizes; the device is checked against thetas
    if x.device != thetas.device:
        raise DlprobeError(
            f"stacked_params are on {thetas.device} but x is on {x.device}; move one of them"
        )

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    if stacked_buffers is None:
        buffers = {n: cast(b) for n, b in base_model.named_buffers()}
        if any(b.is_meta for b in buffers.values()):
            raise DlprobeError("base_model is on the meta device: pass stacked_buffers too")
        buffer_dim = None
    else:
        expected = {n for n, _ in base_model.named_buffers()}
        if set(stacked_buffers) != expected:
            raise DlprobeError(
                f"stacked_buffers must have exactly the buffers of base_model: {sorted(expected)}"
            )
        k = thetas.shape[0]
        bad = [n for n, b in stacked_buffers.items() if b.ndim == 0 or b.shape[0] != k]
        if bad:
            raise DlprobeError(f"stacked_buffers {bad} must have a leading axis of K={k} models")
        buffers = {n: cast(b) for n, b in stacked_buffers.items()}
        buffer_dim = 0
    xs, ys = cast(x), cast(y)

    def f(theta: torch.Tensor, bufs: dict[str, torch.Tensor]) -> torch.Tensor:
        params = unflatten(base_model, theta)
        return loss_fn(functional_call(base_model, (params, bufs), (xs,)), ys)

    return f, thetas, buffers, buffer_dim


def population_loss(
    base_model: nn.Module,
    stacked_params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    stacked_buffers: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean loss of each of K stacked models on shared data.

    Args:
        base_model: a model of the population's architecture (its values are not used;
            it may be on the ``meta`` device if ``stacked_buffers`` are given).
        stacked_params: ``{name: (K, *shape)}`` for every trainable parameter.
        loss_fn, x, y: as for :func:`gradient_norm`; the data is shared by all models.
        stacked_buffers: ``{name: (K, *shape)}``; default: ``base_model``'s buffers for all.

    Returns:
        (K,) losses.
    """
    f, thetas, bufs, bdim = population_loss_fn(
        base_model, stacked_params, loss_fn, x, y, stacked_buffers
    )
    with eval_mode(base_model):
        return vmap(f, in_dims=(0, bdim))(thetas, bufs).detach()  # (K,)


def population_gradient_norm(
    base_model: nn.Module,
    stacked_params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    stacked_buffers: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """:func:`gradient_norm` of each of K stacked models, in one vmapped pass.

    Args: as for :func:`population_loss`.

    Returns:
        (K,) gradient 2-norms.
    """
    f, thetas, bufs, bdim = population_loss_fn(
        base_model, stacked_params, loss_fn, x, y, stacked_buffers
    )
    with eval_mode(base_model):
        g = vmap(grad(f), in_dims=(0, bdim))(thetas, bufs)  # (K, P)
    return torch.linalg.vector_norm(g, dim=1).detach()

"""Shared plumbing for probes: models as functions of one flat parameter vector.

Probes never modify the model they are given: they read its parameters, evaluate it
through ``torch.func.functional_call`` with other parameter values, and restore the
train/eval mode if they had to change it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import functional_call

from dlprobe import DlprobeError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def param_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def flat_params(model: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """All trainable parameters as one detached vector (P,), in ``named_parameters`` order."""
    ps = [p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]
    if not ps:
        raise DlprobeError("the model has no trainable parameters")
    flat = torch.cat(ps)
    return flat if dtype is None else flat.to(dtype)


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a flat vector (P,) into ``{name: tensor}`` shaped like the model's parameters."""
    out, i = {}, 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        out[name] = flat[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    if i != flat.numel():
        raise DlprobeError(f"parameter vector has {flat.numel()} entries, the model needs {i}")
    return out


def buffers_of(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    bufs = {n: b.detach() for n, b in model.named_buffers()}
    if dtype is not None:
        bufs = {n: b.to(dtype) if b.is_floating_point() else b for n, b in bufs.items()}
    return bufs


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for a measurement and restore each module's mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.train(training)


def check_data(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Reject inputs a probe cannot use, with a message saying what was expected."""
    if not isinstance(x, torch.Tensor):
        raise DlprobeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise DlprobeError(f"x must be a non-empty batch (n, ...), got shape {tuple(x.shape)}")
    if y is not None:
        if not isinstance(y, torch.Tensor):
            raise DlprobeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if y.shape[0] != x.shape[0]:
            raise DlprobeError(
                f"x and y must have the same number of examples, got {x.shape[0]} and {y.shape[0]}"
            )
    p = next(model.parameters(), None)
    if p is not None and p.device != x.device:
        raise DlprobeError(f"model is on {p.device} but x is on {x.device}; move one of them")


def flat_loss_fn(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``theta (P,) -> loss`` evaluating ``model`` with parameters ``theta`` (eval mode).

    With ``dtype`` the data and buffers are cast so the whole computation runs in it.
    Call it inside ``eval_mode(model)``.
    """
    xs = x.to(dtype) if dtype is not None and x.is_floating_point() else x
    ys = y.to(dtype) if dtype is not None and y.is_floating_point() else y
    bufs = buffers_of(model, dtype)

    def f(theta: torch.Tensor) -> torch.Tensor:
        params = unflatten(model, theta)
        return loss_fn(functional_call(model, (params, bufs), (xs,)), ys)

    return f


def hessian_operator(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype = torch.float64,
) -> LinearOperator:
    """The loss Hessian at the model's parameters as a SciPy ``LinearOperator`` (P x P).

    Each ``matvec`` is one exact Hessian-vector product (forward-over-reverse with
    ``torch.func.jvp`` of ``torch.func.grad``), computed in ``dtype``. Use it with
    ``scipy.sparse.linalg.eigsh`` for top eigenvalues. Call inside ``eval_mode(model)``.
    """
    f = flat_loss_fn(model, loss_fn, x, y, dtype)
    theta = flat_params(model, dtype)
    grad_f = torch.func.jacrev(f)  # torch.func.grad + jvp fails on F.mse_loss (torch 2.14)

    def matvec(v: np.ndarray) -> np.ndarray:
        vt = torch.as_tensor(np.asarray(v).reshape(-1), dtype=dtype, device=theta.device)
        _, hv = torch.func.jvp(grad_f, (theta,), (vt,))
        return hv.detach().cpu().numpy().astype(np.float64)

    n = theta.numel()
    return LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=np.float64)

"""Shared plumbing for probes: models as functions of one flat parameter vector.

Probes never modify the model they are given: they read its parameters, evaluate it
through ``torch.func.functional_call`` with other parameter values, and restore the
train/eval mode if they had to change it.

A flat vector is split back into parameter tensors with ``torch.split`` (views): slicing
it once per parameter instead makes every backward pass materialise one full-length zero
vector per parameter tensor, which made one gradient of ResNet-18 18x slower.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from dlprobe import DlprobeError
from dlprobe.measure._batches import (
    LossFn,
    as_batches,
    check_data,
    check_scalar_loss,
    loss_reduction,
    model_dtype,
)

__all__ = [
    "LossFn",
    "Objective",
    "buffers_of",
    "check_data",
    "CURVATURES",
    "check_dtype",
    "default_columns",
    "eval_mode",
    "flat_loss_fn",
    "flat_params",
    "param_names",
    "quiet_forward_ad",
    "unflatten",
]


# Curvature matrices the HVP-based probes can use: the loss Hessian (own exact HVPs), or
# its generalized Gauss-Newton part J^T (d^2 loss / d output^2) J (curvlinops'
# GGNLinearOperator): positive semi-definite for convex losses.
CURVATURES = ("hessian", "ggn")


def param_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def flat_params(model: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """All trainable parameters as one detached vector (P,), in ``named_parameters`` order."""
    ps = [p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]
    if not ps:
        raise DlprobeError("the model has no trainable parameters")
    flat = torch.cat(ps)
    return flat if dtype is None else flat.to(dtype)


def _split(flat: torch.Tensor, names: list[str], shapes: list[torch.Size]) -> dict:
    sizes = [s.numel() for s in shapes]
    if sum(sizes) != flat.shape[-1]:
        raise DlprobeError(
            f"parameter vector has {flat.shape[-1]} entries, the parameters need {sum(sizes)}"
        )
    parts = flat.split(sizes)
    return {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a flat vector (P,) into ``{name: tensor}`` shaped like the model's parameters."""
    named = [(n, p.shape) for n, p in model.named_parameters() if p.requires_grad]
    return _split(flat, [n for n, _ in named], [s for _, s in named])


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


@contextmanager
def quiet_forward_ad() -> Iterator[None]:
    """Silence the warning PyTorch gives on first use of forward-mode AD (jvp, HVPs):
    it scripts its decompositions and warns that ``torch.jit.script`` is deprecated,
    which nothing a user does can change. Only inside the probe: no global filter."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
        )
        yield


# Vectors multiplied by the Hessian at once (vmapped): at most this many, and fewer for
# large models so that a batch holds about 2**20 numbers per vector.
_MAX_COLUMNS = 32
_NUMBERS_PER_BATCH = 2**20


def default_columns(n_params: int) -> int:
    """Vectors multiplied by the Hessian at once by default, so that extra memory stays a
    small multiple of the model's: 32 for small models, 1 from about a million parameters
    (each vector costs about three parameter vectors plus the activations of a batch)."""
    return max(1, min(_MAX_COLUMNS, _NUMBERS_PER_BATCH // n_params))


def check_dtype(dtype: torch.dtype | None, allow_none: bool = False) -> None:
    if dtype is None and allow_none:
        return
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise DlprobeError(
            f"dtype must be a floating torch.dtype such as torch.float64, got {dtype}"
        )


def parameter_subset(model: nn.Module, params: Sequence[str] | None) -> list[str]:
    """Names of the parameters a probe differentiates by, in ``named_parameters`` order.

    ``None``: every trainable parameter. Otherwise a list of names from
    ``model.named_parameters()``, e.g. ``["fc.weight", "fc.bias"]`` for one layer.
    """
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
        if not names:
            raise DlprobeError("the model has no trainable parameters")
        return names
    if isinstance(params, str) or not isinstance(params, Iterable):
        raise DlprobeError(
            f"params must be a list of parameter names such as ['fc.weight'], got {params!r}"
        )
    wanted = list(params)
    unknown = [n for n in wanted if n not in named]
    if unknown:
        raise DlprobeError(
            f"params {unknown} are not parameters of the model; names are those of "
            f"model.named_parameters(), e.g. {list(named)[:4]}"
        )
    if len(set(wanted)) != len(wanted) or not wanted:
        raise DlprobeError("params must name each parameter once and at least one")
    chosen = set(wanted)
    return [n for n in named if n in chosen]


def flat_loss_fn(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``theta (P,) -> loss`` evaluating ``model`` with parameters ``theta`` on one batch.

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


class Objective:
    """The loss a probe measures, as a function of a flat vector of chosen parameters.

    ``L(theta)`` is the loss averaged over every example of the data (one batch or many,
    see ``_batches``), evaluated with the model's parameters named in ``names`` replaced
    by the pieces of ``theta`` (P,) and every other parameter and buffer held at the
    model's values, all in ``dtype``. Build and use it inside ``eval_mode(model)``.

    Attributes:
        names: the parameters theta stands for, in ``named_parameters`` order.
        theta: (P,) their current values, detached, in ``dtype`` on the model's device.
        data: the checked :class:`~dlprobe.measure._batches.Batches`.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        x: torch.Tensor | Iterable,
        y: torch.Tensor | None = None,
        *,
        params: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
    ):
        check_dtype(dtype, allow_none=True)
        self.reduction = loss_reduction(loss_fn)
        self.model, self.loss_fn = model, loss_fn
        self.names = parameter_subset(model, params)
        self.dtype = model_dtype(model) if dtype is None else dtype
        self.data = as_batches(model, x, y, dtype)
        named = dict(model.named_parameters())
        self.shapes = [named[n].shape for n in self.names]
        self.theta = torch.cat([named[n].detach().reshape(-1) for n in self.names])
        self.theta = self.theta.to(self.dtype)  # (P,)
        chosen = set(self.names)
        fixed = {n: p for n, p in named.items() if n not in chosen}
        fixed.update(model.named_buffers())
        self.fixed = {n: self._cast(t.detach()) for n, t in fixed.items()}

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype) if t.is_floating_point() else t

    @property
    def n_params(self) -> int:
        return self.theta.numel()

    def split(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` views of a flat vector (P,)."""
        return _split(theta, self.names, self.shapes)

    def batch_loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``loss_fn(model(x), y)`` with parameters theta: a scalar, differentiable in theta."""
        out = functional_call(self.model, (self.split(theta), self.fixed), (x,))
        return check_scalar_loss(self.loss_fn(out, y))

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """L(theta): scalar tensor, detached."""
        total = torch.zeros((), dtype=self.dtype, device=theta.device)
        with torch.no_grad():
            for x, y in self.data:
                total += self.data.weight(x.shape[0], self.reduction) * self.batch_loss(theta, x, y)
        return total

    def value_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L(theta), grad L(theta) (P,))``, detached; one backward pass per batch."""
        step = grad_and_value(self.batch_loss)
        total = torch.zeros((), dtype=self.dtype, device=theta.device)
        g_total = torch.zeros_like(theta)
        for x, y in self.data:
            g, value = step(theta, x, y)
            w = self.data.weight(x.shape[0], self.reduction)
            total += w * value.detach()
            g_total.add_(g.detach(), alpha=w)
        return total, g_total

    def losses(self, thetas: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """L at each row of thetas (m, P), vmapped ``chunk_size`` rows at a time: (m,)."""
        batched = vmap(self.batch_loss, in_dims=(0, None, None), chunk_size=chunk_size)
        total = torch.zeros(thetas.shape[0], dtype=self.dtype, device=thetas.device)
        with torch.no_grad():
            for x, y in self.data:
                total += self.data.weight(x.shape[0], self.reduction) * batched(thetas, x, y)
        return total

    def hessian_operator(self) -> HessianOperator:
        """The Hessian of L at ``theta`` as a :class:`HessianOperator` (P x P)."""
        return HessianOperator(self)

    def curvature_operator(self, curvature: str):
        """``H @ V`` for the matrix named by ``curvature`` (see ``CURVATURES``)."""
        if curvature not in CURVATURES:
            raise DlprobeError(
                f"curvature must be one of {', '.join(CURVATURES)}, got {curvature!r}"
            )
        if curvature == "hessian":
            return self.hessian_operator()
        from curvlinops import GGNLinearOperator  # heavy import, only when used

        model = self.model
        if model_dtype(model) != self.dtype:  # curvlinops evaluates the model's own tensors
            model = copy.deepcopy(model).to(self.dtype)
            for p in model.parameters():
                p.grad = None
        named = dict(model.named_parameters())
        return GGNLinearOperator(
            model,
            _LossModule(self.loss_fn, self.reduction),
            [named[n] for n in self.names],
            self.data,
            check_deterministic=False,
            num_data=self.data.n,
        )

    def hessian_matrix(self, chunk_size: int) -> torch.Tensor:
        """The exact Hessian of L at ``theta`` (P, P): per batch, rows by reverse-over-reverse
        autodiff (``jacrev`` of ``jacrev``), ``chunk_size`` rows vmapped at a time."""
        h = torch.zeros(self.n_params, self.n_params, dtype=self.dtype, device=self.theta.device)
        for x, y in self.data:
            gradient = torch.func.jacrev(self.batch_loss)  # (theta, x, y) -> (P,)
            rows = torch.func.jacrev(gradient, chunk_size=chunk_size)(self.theta, x, y)
            h.add_(rows.detach(), alpha=self.data.weight(x.shape[0], self.reduction))
        return h


class HessianOperator:
    """The Hessian of an :class:`Objective` at its ``theta``, applied to vectors: ``H @ V``.

    Every product is exact: the gradient of ``<grad L(theta), v>`` (reverse-over-reverse
    autodiff, as PyHessian does). With one batch, the graph of the gradient is built
    once and every product is one backward pass through it; with several, it is built
    per batch and freed, so memory stays that of one batch. ``V`` is (P,) or (P, m); the
    m columns go through one backward pass vmapped over them, so memory grows with m.
    """

    def __init__(self, objective: Objective):
        self.objective = objective
        p = objective.n_params
        self.shape = (p, p)
        self.dtype, self.device = objective.dtype, objective.theta.device
        self._graph: tuple[float, torch.Tensor, torch.Tensor] | None = None

    def _gradient_graph(self, x: torch.Tensor, y: torch.Tensor):
        """``(weight, theta, grad)`` with ``grad`` differentiable with respect to ``theta``."""
        theta = self.objective.theta.detach().requires_grad_()
        with torch.enable_grad():
            loss = self.objective.batch_loss(theta, x, y)
            (g,) = torch.autograd.grad(loss, theta, create_graph=True)
        return self.objective.data.weight(x.shape[0], self.objective.reduction), theta, g

    def _graphs(self) -> Iterator[tuple[float, torch.Tensor, torch.Tensor]]:
        data = self.objective.data
        if not data.single:
            for x, y in data:
                yield self._gradient_graph(x, y)
            return
        if self._graph is None:
            self._graph = self._gradient_graph(*next(iter(data)))
        yield self._graph

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        matrix = v if v.ndim == 2 else v.unsqueeze(1)  # (P, m)
        out = torch.zeros_like(matrix)
        for weight, theta, g in self._graphs():
            if not g.requires_grad:  # the gradient does not depend on theta: H = 0
                continue
            # m columns at once: the backward pass vmapped over them (m x the memory)
            (hv,) = torch.autograd.grad(
                g,
                theta,
                matrix.T if matrix.shape[1] > 1 else matrix[:, 0],
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=matrix.shape[1] > 1,
            )
            if hv is not None:
                out.add_(hv.T if matrix.shape[1] > 1 else hv.unsqueeze(1), alpha=weight)
        return out if v.ndim == 2 else out[:, 0]


class _LossModule(nn.Module):
    """A loss function as the ``nn.Module`` with ``.reduction`` that curvlinops expects."""

    def __init__(self, loss_fn: LossFn, reduction: str):
        super().__init__()
        self.loss_fn, self.reduction = loss_fn, reduction

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return check_scalar_loss(self.loss_fn(output, target))

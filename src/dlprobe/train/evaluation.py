"""Losses and metrics of a population: the default loss of a dataset, per-model losses, the
evaluation of every model on a split (its own labels and examples where ``PerModel`` gives
them), full-batch gradient norms and the per-model penalties the objective adds."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import vmap

from dlprobe.data.dataset import Dataset
from dlprobe.train.per_model import ModelData
from dlprobe.train.population import Population

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def default_loss(data: Dataset) -> LossFn:
    """Cross-entropy for classification, mean squared error for regression."""
    return F.cross_entropy if data.task == "classification" else F.mse_loss


def per_model_losses(loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) ``loss_fn`` of each model's outputs ``out[k]`` against ``y[k]``.

    The same as ``vmap(loss_fn)(out, y)``; PyTorch's cross-entropy and mean squared error
    (the default losses) are computed on the flattened batch instead, which is faster (on
    a CPU bit for bit vmap's numbers; tests check). ``y`` may be an expanded view.
    """
    k = out.shape[0]
    if loss_fn is F.cross_entropy and not y.is_floating_point() and out.dim() >= 3:
        per_example = F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none")
        return per_example.reshape(k, -1).mean(1)
    if loss_fn is F.mse_loss and out.shape == y.shape:
        return (out - y).square().reshape(k, -1).mean(1)
    return vmap(loss_fn)(out, y)


def _loss_and_hits(
    loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(K,) mean loss of each model's outputs ``out`` (K, b, C) against ``y`` (K, b), and
    (K,) its number of correct examples (None for float targets).

    Cross-entropy on class labels is computed as log(sum(exp(z))) - z[y] with z = out -
    max(out), from one ``max`` that also gives the predicted class (the first maximum, as
    ``argmax``). It is the formula of ``log_softmax`` without its other C - 1 outputs, and
    differs from ``F.cross_entropy`` only in rounding (its exp and sum are vectorized
    differently); ``log_softmax`` over few classes is several times slower on a CPU.
    Evaluations only: training differentiates ``F.cross_entropy`` itself.
    """
    if y.is_floating_point():
        return per_model_losses(loss_fn, out, y), None
    if loss_fn is F.cross_entropy and out.dim() == 3 and y.numel():
        low, high = y.aminmax()
        if bool((low >= 0) & (high < out.shape[-1])):  # else torch's errors or ignore_index
            top, predicted = out.max(-1)  # (K, b): NaN propagates and wins, as in argmax
            z = out - top.unsqueeze(-1)
            z_y = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            loss = z.exp_().sum(-1).log_().sub_(z_y)  # -log p_y, (K, b)
            return loss.mean(1), (predicted == y).sum(-1).float()
    hits = (out.argmax(-1) == y).float().sum(-1)
    return per_model_losses(loss_fn, out, y), hits


def evaluate_population(
    pop: Population, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean loss (K,) and, for integer labels, accuracy (K,) of every model on (x, y)."""
    loss, correct = loss_and_correct(pop, x, y, loss_fn, chunk)
    return loss, (None if correct is None else correct / x.shape[0])


@torch.no_grad()
def loss_and_correct(
    pop: Population, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean loss (K,) and, for integer labels, the number of correct examples (K,)."""
    pop.train(False)
    loss_sum = torch.zeros(pop.size, device=x.device)
    correct = torch.zeros(pop.size, device=x.device)
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        out = pop.forward(xb, shared=True)  # (K, b, out)
        loss, hits = _loss_and_hits(loss_fn, out, expand(yb, pop.size))
        loss_sum += loss * xb.shape[0]
        if hits is not None:
            correct += hits
    pop.train(True)
    return loss_sum / x.shape[0], (None if y.is_floating_point() else correct)


@torch.no_grad()
def own_loss_and_correct(
    pop: Population, md: ModelData, loss_fn: LossFn, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``loss_and_correct`` of each model on its own training examples and labels."""
    pop.train(False)
    loss_sum = torch.zeros(pop.size, device=md.x.device)
    correct = torch.zeros(pop.size, device=md.x.device)
    for i in range(0, md.n, chunk):
        xb, yb = md.chunk(i, i + chunk)  # yb (K, b, ...)
        out = pop.forward(xb, shared=md.index is None)  # (K, b, out)
        loss, hits = _loss_and_hits(loss_fn, out, yb)
        loss_sum += loss * yb.shape[1]
        if hits is not None:
            correct += hits
    pop.train(True)
    return loss_sum / md.n, (None if md.y.is_floating_point() else correct)


def train_loss_and_correct(pop: Population, md: ModelData, loss_fn: LossFn):
    """Mean loss (K,) and correct examples (K,) (or None) on each model's training set."""
    if md.shared:
        return loss_and_correct(pop, md.x, md.y, loss_fn)
    return own_loss_and_correct(pop, md, loss_fn)


def full_batch_grad_norms(pop: Population, data: Dataset, loss_fn: LossFn) -> torch.Tensor:
    """(K,) gradient norm of each model's loss on the whole training set."""
    return own_grad_norms(pop, ModelData(data, None, pop.seeds), loss_fn)


def own_grad_norms(pop: Population, md: ModelData, loss_fn: LossFn) -> torch.Tensor:
    """(K,) gradient norm of each model's loss on all its training examples."""
    pop.train(False)
    params = pop.parameters()
    if md.shared:
        out, y = pop.forward(md.x, shared=True), expand(md.y, pop.size)
    else:
        x, y = md.chunk(0, md.n)
        out = pop.forward(x, shared=md.index is None)
    losses = vmap(loss_fn)(out, y)
    grads = torch.autograd.grad(losses.sum(), params, allow_unused=True)
    pop.train(True)
    return per_model_sq_norms(pop, params, grads).sqrt().detach()


def per_model_l1(pop: Population) -> torch.Tensor:
    """(K,) sum of |parameter| of each model, differentiable."""
    if pop.batched:
        return sum(p.abs().reshape(pop.size, -1).sum(1) for p in pop.parameters())
    return torch.stack([sum(p.abs().sum() for p in ps) for ps in pop.per_model_parameters()])


def expand(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.unsqueeze(0).expand(k, *t.shape)


def per_model_sq_norms(pop: Population, params, grads) -> torch.Tensor:
    """(K,) squared norm of per-model gradients, given grads aligned with ``params``."""
    if pop.batched:
        return sum((g.reshape(pop.size, -1) ** 2).sum(1) for g in grads if g is not None)
    grad_of = {id(p): g for p, g in zip(params, grads, strict=True)}
    return torch.stack(
        [
            sum((grad_of[id(p)] ** 2).sum() for p in ps if grad_of[id(p)] is not None)
            for ps in pop.per_model_parameters()
        ]
    )

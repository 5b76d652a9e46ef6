"""Input sensitivity: how much the output or the loss moves when one input moves.

Two definitions, both per example and then averaged:

- ``"loss-gradient"`` (the homework's): the Frobenius norm of the gradient of the loss of
  ONE example with respect to that example's input, ``||d loss(f(x_i), y_i) / d x_i||_F``.
  It is computed per example with ``vmap(grad(...))``, never from the gradient of the batch
  mean loss: that gradient is the per-example gradient divided by the batch size, and
  dividing by it makes sensitivity fall as 1/batch size by construction.
- ``"jacobian"`` (Novak et al. 2018): the Frobenius norm of the Jacobian of the softmax
  class probabilities with respect to the input, ``||d softmax(f(x_i)) / d x_i||_F``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from dlprobe import DlprobeError
from dlprobe.measure._functional import LossFn, buffers_of, check_data, eval_mode

DEFINITIONS = ("loss-gradient", "jacobian")


@dataclass(frozen=True)
class Sensitivity:
    """Per-example sensitivities and their mean.

    Attributes:
        per_example: (n,) Frobenius norms, one per input, detached, on the model's device.
        mean: average of ``per_example``.
        definition: ``"loss-gradient"`` or ``"jacobian"``.
    """

    per_example: torch.Tensor
    mean: float
    definition: str


def sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    loss_fn: LossFn | None = None,
    definition: str = "loss-gradient",
    batch_size: int | None = None,
) -> Sensitivity:
    """Per-example input sensitivity of ``model`` on inputs ``x`` (evaluated in eval mode).

    Args:
        model: any module mapping a batch (b, ...) to outputs (b, ...); for ``"jacobian"``
            the outputs are class logits (b, C).
        x: inputs (n, ...).
        y: targets (n, ...); needed by ``"loss-gradient"``, unused by ``"jacobian"``.
        loss_fn: ``loss_fn(output, target) -> scalar mean``; needed by ``"loss-gradient"``.
        definition: ``"loss-gradient"`` or ``"jacobian"`` (see the module docstring).
        batch_size: examples per vmapped chunk (memory only; the result does not depend on
            it). ``None``: all at once.

    Returns:
        ``Sensitivity`` with the (n,) per-example norms and their mean.
    """
    if definition not in DEFINITIONS:
        raise DlprobeError(
            f"unknown sensitivity definition {definition!r}; valid: {', '.join(DEFINITIONS)}"
        )
    if definition == "loss-gradient" and (y is None or loss_fn is None):
        raise DlprobeError("definition 'loss-gradient' needs both y and loss_fn")
    check_data(model, x, y if definition == "loss-gradient" else None)
    if not x.is_floating_point():
        raise DlprobeError(f"x must be floating point to differentiate by it, got {x.dtype}")
    n = x.shape[0]
    if batch_size is None:
        batch_size = n
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DlprobeError(f"batch_size must be a positive int or None, got {batch_size!r}")

    params = {name: p.detach() for name, p in model.named_parameters()}
    bufs = buffers_of(model)

    def output(x_i: torch.Tensor) -> torch.Tensor:
        # One example as a batch of one, so batch-shaped modules and losses apply unchanged.
        return functional_call(model, (params, bufs), (x_i.unsqueeze(0),))

    if definition == "loss-gradient":

        def example_loss(x_i: torch.Tensor, y_i: torch.Tensor) -> torch.Tensor:
            return loss_fn(output(x_i), y_i.unsqueeze(0))

        per_chunk = vmap(grad(example_loss))  # (b, ...) , (b, ...) -> (b, ...)
    else:

        def probabilities(x_i: torch.Tensor) -> torch.Tensor:
            return torch.softmax(output(x_i).reshape(-1), dim=0)  # (C,)

        jac = vmap(jacrev(probabilities))  # (b, ...) -> (b, C, ...)

        def per_chunk(x_c: torch.Tensor, _y_c: torch.Tensor | None) -> torch.Tensor:
            return jac(x_c)

    norms = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, n, batch_size):
            x_c = x[start : start + batch_size]
            y_c = None if y is None else y[start : start + batch_size]
            d = per_chunk(x_c, y_c)  # (b, ...) gradient or (b, C, ...) Jacobian
            norms.append(d.reshape(d.shape[0], -1).norm(dim=1))  # (b,)
    per_example = torch.cat(norms)  # (n,)
    return Sensitivity(per_example, per_example.mean().item(), definition)

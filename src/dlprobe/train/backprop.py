"""Losses and gradients of a population of plain Sequentials, with the backward pass written out.

A population whose models are ``Flatten``/``Linear``/element-wise Sequentials (every
dlprobe MLP without BatchNorm or maxout: the road ``Population`` runs as batched matrix
products) trained on cross-entropy or mean squared error has a short backward pass: per
layer, two batched matrix products and a sum. Written out, it skips what autograd adds to
every step (recording the graph during the forward pass, walking it, zero-filling
``.grad`` and adding into it) and writes each gradient once, into buffers kept from step
to step. It calls the ATen kernels autograd calls, in the same order and on the same
operands, so its losses and gradients are bitwise those of ``losses.sum().backward()``
(tests check every activation and both losses): a training takes this road or autograd's
to the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dlprobe.models.activations import Cos
from dlprobe.train.flat import move_to_flat
from dlprobe.train.population import IN_PLACE, Population

# torch.selu is elu with these constants (ATen's SELU_ALPHA and SELU_SCALE); its gradient
# is elu's with them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

# d(loss)/d(input) of an element-wise layer from d(loss)/d(output) ``d``, its input ``z``
# and its output ``h``: autograd's formula for each (torch's derivatives.yaml).
_BACKWARD: dict[type, Callable[..., torch.Tensor]] = {
    nn.ReLU: lambda m, d, z, h: torch.ops.aten.threshold_backward(d, h, 0),
    nn.Tanh: lambda m, d, z, h: torch.ops.aten.tanh_backward(d, h),
    nn.Sigmoid: lambda m, d, z, h: torch.ops.aten.sigmoid_backward(d, h),
    nn.LeakyReLU: lambda m, d, z, h: torch.ops.aten.leaky_relu_backward(
        d, z, m.negative_slope, False
    ),
    nn.ELU: lambda m, d, z, h: torch.ops.aten.elu_backward(d, m.alpha, 1, 1, False, z),
    nn.SELU: lambda m, d, z, h: torch.ops.aten.elu_backward(
        d, _SELU_ALPHA, _SELU_SCALE, 1, False, z
    ),
    Cos: lambda m, d, z, h: d * z.sin().neg(),
    nn.Identity: lambda m, d, z, h: d,
}


class SequentialBackprop:
    """Per-model losses (forward) and their gradients (backward) of a batched population.

    ``losses(x, y)`` runs the forward pass on per-model inputs (K, B, ...) against targets
    (K, B) (class labels, cross-entropy) or (K, B, out) (mean squared error) and keeps what
    the backward pass needs; ``backward(seed)`` then sets every parameter's ``.grad`` to
    the gradient of ``sum_k seed[k] * losses[k]``. Build it with ``for_training``.
    """

    def __init__(self, pop: Population, loss: str):
        self.pop, self.loss = pop, loss
        self.plan = pop._plan
        self.first_linear = next(i for i, (kind, _, _) in enumerate(self.plan) if kind == "linear")
        # gradient buffers, kept from step to step, laid out as the parameters are (one
        # flat buffer, see dlprobe.train.flat): fused Adam then steps all in one call
        self.grads = {n: torch.empty_like(p) for n, p in pop.params.items()}
        move_to_flat(list(self.grads.values()))
        self._saved: list = []

    @classmethod
    def for_training(
        cls, pop: Population, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor
    ) -> SequentialBackprop | None:
        """The written-out road for training ``pop`` on examples like ``x`` (n, ...) with
        targets like ``y`` ((n,) labels, or (n, ...) or (K, n, ...) targets), or None where
        only autograd's covers it (another model, loss or input shape)."""
        if not pop.batched or pop._plan is None:
            return None
        kinds = [kind for kind, _, _ in pop._plan]
        if "linear" not in kinds or any(
            type(m) not in _BACKWARD for kind, _, m in pop._plan if kind == "elementwise"
        ):
            return None
        dims = x.dim() + 1  # (K, B, ...): Linear must see (K, B, in) to be a batched product
        for kind, _, _ in pop._plan:
            if kind == "flatten":
                dims = 3
            elif kind == "linear" and dims != 3:
                return None
        if loss_fn is F.cross_entropy and not y.is_floating_point():
            return cls(pop, "cross_entropy")
        last = [name for kind, name, _ in pop._plan if kind == "linear"][-1]
        out_dim = pop.params[f"{last}.weight"].shape[1]
        if loss_fn is F.mse_loss and y.is_floating_point() and y.shape[-1] == out_dim:
            return cls(pop, "mse")
        return None

    @torch.no_grad()
    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(K,) loss of each model on its minibatch: x (K, B, ...), y (K, B) or (K, B, out)."""
        params, saved = self.pop.params, []
        product = False  # whether x is a Linear's output, kept nowhere else
        for kind, name, module in self.plan:
            if kind == "flatten":
                saved.append(x.shape)
                x = x.flatten(2)
            elif kind == "linear":
                saved.append(x)
                w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
                x = torch.bmm(x, w.transpose(1, 2))  # what matmul calls for (K, B, in) x
                if b is not None:  # in place on the product's own output: the same numbers
                    x.add_(b.reshape(b.shape[0], 1, b.shape[1]))
            elif product and type(module) in IN_PLACE:
                # ReLU, tanh and sigmoid overwrite the product (their backward needs only
                # their output)
                x = IN_PLACE[type(module)](x)
                saved.append((None, x))
            else:
                z, x = x, module(x)
                saved.append((z, x))
            product = kind == "linear"
        k = x.shape[0]
        if self.loss == "cross_entropy":  # F.cross_entropy is log_softmax, then nll_loss
            log_p, target = torch.log_softmax(x.flatten(0, 1), 1), y.flatten(0, 1)
            per_example, total_weight = torch.ops.aten.nll_loss_forward(
                log_p, target, None, 0, -100
            )
            self._loss_saved = (x.shape, log_p, target, total_weight)
        else:
            diff = x - y
            per_example = diff.square()
            self._loss_saved = (diff,)
        self._saved = saved
        return per_example.reshape(k, -1).mean(1)

    @torch.no_grad()
    def backward(self, seed: torch.Tensor) -> None:
        """Set ``.grad`` of every parameter to d(sum_k seed[k] losses[k]) / d(parameter)
        for the last ``losses`` call; ``seed`` (K,) is 1 for a trained model, 0 for a
        frozen one."""
        if self.loss == "cross_entropy":
            shape, log_p, target, total_weight = self._loss_saved
            g = seed.unsqueeze(1).expand(shape[0], shape[1]).div(shape[1])  # d mean / d example
            g = torch.ops.aten.nll_loss_backward(
                g.reshape(-1), log_p, target, None, 0, -100, total_weight
            )
            d = torch.ops.aten._log_softmax_backward_data(g, log_p, 1, log_p.dtype).view(shape)
        else:
            (diff,) = self._loss_saved
            n = diff[0].numel()
            g = seed.unsqueeze(1).expand(diff.shape[0], n).div(n).view(diff.shape)
            d = g * (2 * diff)  # d square / d diff, as autograd's pow backward
        params = self.pop.params
        for i in range(len(self.plan) - 1, self.first_linear - 1, -1):
            kind, name, module = self.plan[i]
            saved = self._saved[i]
            if kind == "flatten":
                d = d.reshape(saved)
            elif kind == "linear":
                w = params[f"{name}.weight"]
                # autograd's product x^T d (K, in, out), copied into a contiguous (K, out,
                # in) gradient as AccumulateGrad does: fused optimizers misread strided
                # gradients, and d^T x (or bmm into a transposed out=) rounds differently
                grad_w = self.grads[f"{name}.weight"]
                grad_w.copy_(torch.bmm(saved.transpose(1, 2), d).transpose(1, 2))
                w.grad = grad_w
                if f"{name}.bias" in params:
                    grad_b = self.grads[f"{name}.bias"]
                    torch.sum(d, 1, out=grad_b)
                    params[f"{name}.bias"].grad = grad_b
                if i > self.first_linear:
                    d = torch.bmm(d, w)
            else:
                z, h = saved
                d = _BACKWARD[type(module)](module, d, z, h)
        self._saved, self._loss_saved = [], None

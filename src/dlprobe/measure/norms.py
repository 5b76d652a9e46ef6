"""Norm-based capacity measures of a network's weights (Neyshabur et al. 2017).

Per layer (every ``nn.Linear`` and convolution, weights only, biases excluded):
L1 norm (sum of |w|), L2 (Frobenius) norm, and spectral norm (largest singular value).
A convolution's weight (out, in, *kernel) is reshaped to a matrix (out, in * prod(kernel))
and its spectral norm is that matrix's, NOT the operator norm of the convolution on
inputs (which depends on the input size and stride).

Totals over ALL trainable parameters, biases and normalization parameters included:
``l1_total`` and ``l2_total``. ``spectral_product`` is the product of the per-layer
spectral norms.

``path_norm`` is the L2 path norm: for a chain of Linear layers W_1, ..., W_L separated by
element-wise activations, the square root of the sum over every input-output path
(one unit per layer) of the product of the squared weights along it,
``path_norm^2 = 1^T (W_L∘W_L) ... (W_1∘W_1) 1`` (∘: element-wise square), i.e. a forward
pass of a ones vector with every weight squared, biases dropped and activations
skipped. Biases are not part of any path. For a bias-free ReLU network it is invariant
under the rescaling of Dinh et al. (scale a layer by a, the next by 1/a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.alignment import ELEMENTWISE

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LayerNorm:
    """Norms of one layer's weight (bias excluded)."""

    name: str
    l1: float
    l2: float
    spectral: float


@dataclass(frozen=True)
class WeightNorms:
    """Per-layer weight norms and network-level totals (see the module docstring).

    ``path_norm`` is None when the model is not an ``nn.Sequential`` chain of Linear
    layers, element-wise activations and Flatten (convolutions, pooling, BatchNorm and
    maxout have no path decomposition here).
    """

    layers: tuple[LayerNorm, ...]
    l1_total: float
    l2_total: float
    spectral_product: float
    path_norm: float | None

    def as_dict(self) -> dict[str, float | None]:
        """Flat ``{name: value}``: the totals, then ``l1.<layer>``, ``l2.<layer>``, ..."""
        out: dict[str, float | None] = {
            "l1_total": self.l1_total,
            "l2_total": self.l2_total,
            "spectral_product": self.spectral_product,
            "path_norm": self.path_norm,
        }
        for layer in self.layers:
            out[f"l1.{layer.name}"] = layer.l1
            out[f"l2.{layer.name}"] = layer.l2
            out[f"spectral.{layer.name}"] = layer.spectral
        return out


def _path_norm(model: nn.Module) -> float | None:
    if not isinstance(model, nn.Sequential):
        return None
    v: torch.Tensor | None = None  # (units,) summed squared weight of all paths to each unit
    for m in model:
        if isinstance(m, nn.Linear):
            w2 = m.weight.detach().to(torch.float64) ** 2  # (out, in)
            v = w2.sum(dim=1) if v is None else w2 @ v
        elif not isinstance(m, (nn.Flatten, *ELEMENTWISE)):
            return None
    return None if v is None else math.sqrt(v.sum().item())


def weight_norms(model: nn.Module) -> WeightNorms:
    """L1, L2 and spectral norms of each layer's weight, totals, and the L2 path norm.

    Args:
        model: any ``nn.Module``; its Linear and Conv layers are measured in the order of
            ``named_modules``. Computed in float64; the model is left untouched.

    Returns:
        ``WeightNorms`` (``.as_dict()`` for a flat record).
    """
    layers = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if not isinstance(m, WEIGHT_LAYERS):
                continue
            w = m.weight.detach().to(torch.float64)
            matrix = w.reshape(w.shape[0], -1)  # (out, in * prod(kernel))
            layers.append(
                LayerNorm(
                    name=name,
                    l1=w.abs().sum().item(),
                    l2=torch.linalg.vector_norm(w).item(),
                    spectral=torch.linalg.matrix_norm(matrix, ord=2).item(),
                )
            )
        if not layers:
            raise DlprobeError(
                f"the model has no Linear or Conv layer to measure, got {type(model).__name__}"
            )
        params = [p.detach().to(torch.float64) for p in model.parameters() if p.requires_grad]
        l1_total = sum(p.abs().sum().item() for p in params)
        l2_total = math.sqrt(sum((p**2).sum().item() for p in params))
        path = _path_norm(model)
    return WeightNorms(
        layers=tuple(layers),
        l1_total=l1_total,
        l2_total=l2_total,
        spectral_product=math.prod(layer.spectral for layer in layers),
        path_norm=path,
    )

"""Dinh et al. (2017): sharp minima can generalize, because sharpness is not invariant.

A positively homogeneous activation satisfies ``act(a z) = a act(z)`` for ``a > 0``. In a
network ``... -> W1, b1 -> act -> W2 -> ...``, multiplying ``W1, b1`` by ``a`` and ``W2``
by ``1/a`` leaves the function unchanged while the curvature of the loss in the first
layer's parameters scales by ``1/a^2`` and in the second's by ``a^2``: the same function
can be made arbitrarily sharp.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.models import Maxout

# Layers whose weights are rescaled, and modules that may sit between two of them because
# they commute with multiplication by a > 0 (max-pooling and maxout are maxima, Flatten,
# Identity and Dropout act linearly).
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
HOMOGENEOUS = (
    nn.ReLU,
    nn.LeakyReLU,
    Maxout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
)


def rescale_relu_layers(model: nn.Module, layer: int, factor: float) -> nn.Module:
    """A copy of ``model`` computing the same function with layers ``layer`` and
    ``layer + 1`` rescaled: weight and bias of the first times ``factor``, weight of the
    next times ``1 / factor``.

    Args:
        model: an ``nn.Sequential`` whose Linear/Conv layers are separated only by
            positively homogeneous modules (ReLU, LeakyReLU, Maxout, max-pooling, Flatten,
            Identity, Dropout).
        layer: index into the model's Linear/Conv layers, in order; not the last one.
        factor: the rescaling ``a > 0``.

    Returns:
        A new model (deep copy, ``.grad`` cleared); ``model`` is left untouched.
    """
    if not isinstance(model, nn.Sequential):
        raise DlprobeError(
            f"rescaling needs an nn.Sequential of layers, got {type(model).__name__}"
        )
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise DlprobeError(f"factor must be a number > 0, got {factor!r}")
    if not factor > 0 or not math.isfinite(factor):
        raise DlprobeError(f"factor must be a finite number > 0, got {factor!r}")
    positions = [i for i, m in enumerate(model) if isinstance(m, WEIGHTED)]
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(positions) - 1:
        raise DlprobeError(
            f"layer must be an index 0..{len(positions) - 2} into the model's "
            f"{len(positions)} Linear/Conv layers, not the last one; got {layer!r}"
        )
    first, second = positions[layer], positions[layer + 1]
    for m in list(model)[first + 1 : second]:
        if not isinstance(m, HOMOGENEOUS):
            raise DlprobeError(
                f"{type(m).__name__} between layers {layer} and {layer + 1} is not positively "
                "homogeneous, so rescaling would change the function; allowed: "
                + ", ".join(t.__name__ for t in HOMOGENEOUS)
            )
    rescaled = copy.deepcopy(model)
    for p in rescaled.parameters():
        p.grad = None
    with torch.no_grad():
        rescaled[first].weight.mul_(factor)
        if rescaled[first].bias is not None:
            rescaled[first].bias.mul_(factor)
        rescaled[second].weight.div_(factor)
    return rescaled

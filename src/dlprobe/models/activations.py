"""Activation functions by name, including cos and maxout."""

from __future__ import annotations

import torch
from torch import nn

from dlprobe import DlprobeError


class Cos(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cos(x)


class Maxout(nn.Module):
    """Max over groups of ``pieces`` consecutive units: (B, pieces*w, ...) -> (B, w, ...).

    The preceding layer learns the pieces (Goodfellow et al. 2013), so a maxout layer of
    width w needs ``pieces * w`` units before it.
    """

    def __init__(self, pieces: int = 2):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *rest = x.shape
        return x.reshape(b, c // self.pieces, self.pieces, *rest).amax(dim=2)


ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "cos": Cos,
    "maxout": Maxout,
}

# Activations that are piecewise linear: units can be rescaled (Dinh et al.) and
# activation patterns define linear regions.
PIECEWISE_LINEAR = ("relu", "leaky_relu", "maxout")


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise DlprobeError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")


def make_activation(name: str) -> nn.Module:
    check_activation(name)
    return ACTIVATIONS[name]()


def units_before(name: str, width: int) -> int:
    """How many units a layer must output so that the activation leaves ``width``."""
    return width * 2 if name == "maxout" else width

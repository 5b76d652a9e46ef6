"""Initialization schemes by name, applied after a model is built.

``default`` keeps PyTorch's (weights and biases uniform in ±1/√fan_in). ``kaiming`` draws
every Linear and Conv weight from N(0, gain²/fan_in) with the activation's gain (He et
al. 2015: √2 for ReLU), so the signal keeps its scale through depth; biases keep
PyTorch's draw. Deep narrow ReLU nets that collapse to a constant under ``default``
train under ``kaiming`` (see the simulate-function experiment).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlprobe import DlprobeError

INITS = ("default", "kaiming")

# Gain of each activation (torch.nn.init.calculate_gain where it has one). Maxout's max of
# two i.i.d. zero-mean pieces keeps the whole second moment (E[max(a, b)²] = E[a²], since
# max² and min² have the same law), so its gain is 1, not ReLU's √2 (which grew the signal
# √2-fold per layer); SELU uses LeCun's 1/√fan_in.
_GAINS = {
    "relu": math.sqrt(2.0),
    "leaky_relu": nn.init.calculate_gain("leaky_relu", 0.01),
    "maxout": 1.0,
    "elu": math.sqrt(2.0),
    "tanh": nn.init.calculate_gain("tanh"),
    "sigmoid": 1.0,
    "selu": 1.0,
    "cos": 1.0,
}


def initialize(model: nn.Module, scheme: str, activation: str) -> nn.Module:
    """Re-draw ``model``'s weights by ``scheme`` (in place, from the global generator)."""
    if scheme not in INITS:
        raise DlprobeError(f"unknown init {scheme!r}; valid names: {', '.join(INITS)}")
    if scheme == "default":
        return model
    gain = _GAINS[activation]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, gain / math.sqrt(fan_in))
    return model

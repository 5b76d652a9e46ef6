"""Helpers for probe tests: tiny named problems and the 'model left untouched' check."""

from __future__ import annotations

import copy

import torch
from torch import nn

from dlprobe.models import MLP


def snapshot(model: nn.Module) -> dict:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "buffers": [b.clone() for b in model.buffers()],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for a, b in zip(before["params"], after["params"], strict=True):
        assert torch.equal(a, b), "probe changed a parameter"
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b), "probe changed .grad"
    assert before["modes"] == after["modes"], "probe changed train/eval mode"
    for a, b in zip(before["buffers"], after["buffers"], strict=True):
        assert torch.equal(a, b), "probe changed a buffer"


def tiny_regression(activation: str = "tanh", widths=(1, 6, 5, 1), n: int = 16, seed: int = 0):
    """A small MLP and 1-D regression data (float32)."""
    torch.manual_seed(seed)
    model = MLP(list(widths), activation)
    x = torch.linspace(-1, 1, n).unsqueeze(1)
    y = torch.sin(3 * x)
    return model, nn.functional.mse_loss, x, y


def tiny_classifier(activation: str = "relu", widths=(4, 8, 3), n: int = 24, seed: int = 0):
    """A small MLP classifier on Gaussian inputs with integer labels."""
    torch.manual_seed(seed)
    model = MLP(list(widths), activation)
    x = torch.randn(n, widths[0])
    y = torch.randint(0, widths[-1], (n,))
    return model, nn.functional.cross_entropy, x, y


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)

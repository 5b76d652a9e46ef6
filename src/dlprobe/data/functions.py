"""One-dimensional target functions for the deep-vs-shallow experiments (HW1-1)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dlprobe import DlprobeError
from dlprobe.data.dataset import Dataset


@dataclass(frozen=True)
class TargetFunction:
    name: str
    formula: str  # human-readable, used in figure titles and the report
    fn: Callable[[torch.Tensor], torch.Tensor]
    domain: tuple[float, float]


def _sinc5(x: torch.Tensor) -> torch.Tensor:
    # sin(5πx)/(5πx) with its limit 1 at x = 0
    z = 5 * math.pi * x
    return torch.where(z == 0, torch.ones_like(z), torch.sin(z) / torch.where(z == 0, 1.0, z))


FUNCTIONS: dict[str, TargetFunction] = {
    f.name: f
    for f in [
        TargetFunction("sinc", "sin(5πx)/(5πx)", _sinc5, (0.0, 1.0)),
        TargetFunction(
            "sgn-sin", "sgn(sin(5πx))", lambda x: torch.sign(torch.sin(5 * math.pi * x)), (0.0, 1.0)
        ),
        TargetFunction(
            "square-wave",
            "square wave, period 0.4",
            lambda x: torch.where(torch.remainder(x, 0.4) < 0.2, 1.0, -1.0),
            (0.0, 1.0),
        ),
        TargetFunction(
            "sawtooth-sine",
            "sawtooth(4x) + sin(2πx)/2",
            lambda x: 2 * torch.remainder(4 * x, 1.0) - 1 + 0.5 * torch.sin(2 * math.pi * x),
            (0.0, 1.0),
        ),
        TargetFunction(
            "sum-of-sines",
            "sin(2πx) + sin(6πx)/2 + sin(14πx)/4",
            lambda x: (
                torch.sin(2 * math.pi * x)
                + 0.5 * torch.sin(6 * math.pi * x)
                + 0.25 * torch.sin(14 * math.pi * x)
            ),
            (0.0, 1.0),
        ),
        TargetFunction("square", "x²", lambda x: x**2, (-1.0, 1.0)),
        TargetFunction(
            "sin-cos-sq", "sin(x) + cos(x²)", lambda x: torch.sin(x) + torch.cos(x**2), (0.0, 5.0)
        ),
        TargetFunction(
            "damped-oscillation",
            "exp(-3x)·cos(8πx)",
            lambda x: torch.exp(-3 * x) * torch.cos(8 * math.pi * x),
            (0.0, 1.0),
        ),
        TargetFunction("sine", "sin(x)", torch.sin, (0.0, 2 * math.pi)),
    ]
}


def get_function(name: str) -> TargetFunction:
    if name not in FUNCTIONS:
        raise DlprobeError(f"unknown function {name!r}; valid names: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[name]


def function_dataset(name: str, n_train: int = 256, n_test: int = 512) -> Dataset:
    """Evenly spaced training points on the domain, test points on a finer grid.

    Inputs are shape (n, 1), targets (n, 1), both float32.
    """
    if n_train < 2 or n_test < 2:
        raise DlprobeError(f"a function needs at least 2 points, got n_train={n_train}")
    f = get_function(name)
    lo, hi = f.domain
    x_train = torch.linspace(lo, hi, n_train, dtype=torch.float64).unsqueeze(1)
    x_test = torch.linspace(lo, hi, n_test, dtype=torch.float64).unsqueeze(1)
    return Dataset(
        name=f"function:{name}",
        x_train=x_train.float(),
        y_train=f.fn(x_train).float(),
        x_test=x_test.float(),
        y_test=f.fn(x_test).float(),
        task="regression",
        meta={"function": name, "formula": f.formula, "domain": list(f.domain)},
    )

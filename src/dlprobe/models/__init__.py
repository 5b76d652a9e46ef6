"""Model factories, activations and parameter budgets.

Models are described by small JSON-able specs so that a run's config.json can rebuild
them: ``{"kind": "mlp", "widths": [1, 190, 1], "activation": "relu"}`` or
``{"kind": "cnn", "input_shape": [1, 40], "channels": [8, 8], "num_classes": 10}``.
"""

from __future__ import annotations

from torch import nn

from dlprobe import DlprobeError
from dlprobe.models.activations import ACTIVATIONS, PIECEWISE_LINEAR, Cos, Maxout, make_activation
from dlprobe.models.budget import (
    count_params,
    mlp_param_count,
    mlp_widths_for_budget,
    solve_width,
)
from dlprobe.models.cnn import CNN
from dlprobe.models.init import INITS, initialize
from dlprobe.models.mlp import MLP
from dlprobe.models.normalization import recompute_batch_norm_statistics

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "INITS",
    "MLP",
    "PIECEWISE_LINEAR",
    "Cos",
    "Maxout",
    "build_model",
    "count_params",
    "describe_model",
    "initialize",
    "make_activation",
    "mlp_param_count",
    "mlp_widths_for_budget",
    "recompute_batch_norm_statistics",
    "solve_width",
]


def build_model(spec: dict) -> nn.Module:
    """Build a model from its spec (see module docstring)."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    spec.pop("label", None)
    if kind == "mlp":
        return MLP(**spec)
    if kind == "cnn":
        return CNN(**spec)
    raise DlprobeError(f"unknown model kind {kind!r}; valid: mlp, cnn")


def describe_model(spec: dict) -> str:
    """Short human description, e.g. ``MLP 1-190-1 relu``."""
    act = spec.get("activation", "relu")
    if spec["kind"] == "mlp":
        return f"MLP {'-'.join(map(str, spec['widths']))} {act}"
    dims = len(spec["input_shape"]) - 1
    return f"CNN{dims}d channels {'-'.join(map(str, spec['channels']))} {act}"

"""Every generalization indicator of ``dlprobe.measure`` for one trained ReLU classifier,
and the Dinh et al. audit: which indicators a function-preserving rescaling changes.

``indicators(model, probe)`` returns one number per entry of ``INDICATORS`` (None where a
probe has no finite value, e.g. a valley edge beyond the search distance). ``SIGNS`` says
which way an indicator should move with the generalization gap: +1 when a larger value
means a more complex (sharper, larger, more sensitive) model, -1 for the valley width,
which grows with flatness. ``dinh_audit`` compares the indicators of a model with those of
the same function rescaled (layer 0 times a, layer 1 times 1/a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlprobe.data import Dataset
from dlprobe.measure import (
    critical_sample_ratio,
    linear_regions,
    pac_bayes_flatness,
    sensitivity,
    sharpness,
    valley_width,
    weight_norms,
)
from dlprobe.models import count_params

from .rescaling import rescaled_rows

# Result field -> label, in the order of the report's tables.
INDICATORS = {
    "keskar": "Keskar sharpness",
    "ball": "ball sharpness",
    "hessian": "Hessian sharpness",
    "valley_width": "valley width",
    "sensitivity": "loss-gradient sensitivity",
    "jacobian": "Jacobian sensitivity",
    "l2_norm": "L2 norm",
    "path_norm": "path norm",
    "spectral_product": "product of spectral norms",
    "critical_ratio": "critical sample ratio",
    "regions": "linear regions on a plane",
    "pac_flatness": "PAC-Bayes flatness 1/σ²",
    "pac_bound": "PAC-Bayes bound",
    "params": "parameter count (baseline)",
}
SIGNS = {name: -1 if name == "valley_width" else 1 for name in INDICATORS}
# The sharpness family: probes of the loss around the weights (Jiang et al.'s best group).
SHARPNESS = ("keskar", "ball", "hessian", "valley_width", "pac_flatness", "pac_bound")


def error_rate(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The 0-1 training error: the loss of the PAC-Bayes noise search (Jiang et al.)."""
    return (output.argmax(-1) != target).to(output.dtype).mean()


@dataclass(frozen=True)
class Probe:
    """What the probes measure on, and how hard they search."""

    x: torch.Tensor  # (n, ...) training examples the probes use
    y: torch.Tensor  # (n,) their labels (the clean ones)
    n_train: int  # m, training examples of the PAC-Bayes bound
    epsilon: float  # neighbourhood of the Keskar box, the ball and the Hessian estimate
    search_steps: int  # L-BFGS-B / ball ascent / critical-sample steps
    valley_height: float  # loss rise of the valley's edge
    valley_directions: int  # random directions of the valley width
    critical_radius: float  # L-inf radius of the critical-sample search, input units
    region_resolution: int  # grid points per axis of the linear-region plane
    pac_rise: float  # largest training-error rise under weight noise
    pac_samples: int  # Monte Carlo draws of the noise
    seed: int


def indicators(model: nn.Module, initial: torch.Tensor, p: Probe) -> dict:
    """Every indicator of ``INDICATORS`` for ``model`` (initial weights ``initial`` (P,))."""
    ce, kw = F.cross_entropy, {"epsilon": p.epsilon, "seed": p.seed}
    steps = p.search_steps
    valley = valley_width(
        model, ce, p.x, p.y, p.valley_height, n_directions=p.valley_directions,
        max_distance=20.0, seed=p.seed, scan_points=16,
    )  # fmt: skip
    norms = weight_norms(model)
    pac = pac_bayes_flatness(
        model, error_rate, p.x, p.y, initial=initial, n_train=p.n_train, max_rise=p.pac_rise,
        samples=p.pac_samples, bisection_steps=12, seed=p.seed,
    )  # fmt: skip
    x1, x2, x3 = p.x[:3]
    values = {
        "keskar": sharpness(model, ce, p.x, p.y, method="keskar", steps=steps, **kw).value,
        "ball": sharpness(model, ce, p.x, p.y, method="ball", steps=steps, **kw).value,
        "hessian": sharpness(model, ce, p.x, p.y, method="hessian", **kw).value,
        "valley_width": valley.mean,
        "sensitivity": sensitivity(model, p.x, p.y, ce).mean,
        "jacobian": sensitivity(model, p.x, definition="jacobian").mean,
        "l2_norm": norms.l2_total,
        "path_norm": norms.path_norm,
        "spectral_product": norms.spectral_product,
        "critical_ratio": critical_sample_ratio(
            model, p.x, p.critical_radius, steps=steps, seed=p.seed
        ).ratio,
        "regions": linear_regions(model, x1, x2, x3, p.region_resolution).n_regions,
        "pac_flatness": pac.flatness,
        "pac_bound": pac.bound,
        "params": count_params(model),
    }
    return {k: v if v is not None and math.isfinite(v) else None for k, v in values.items()}


def dinh_audit(
    model: nn.Module, initial: torch.Tensor, probe: Probe, data: Dataset, factor: float
) -> dict:
    """One model's indicators as trained and with layer 0 times ``factor``, layer 1 times
    1/``factor`` (the same function): per indicator both values and the relative change
    ``|rescaled - original| / |original|``, and the largest output change on the test set."""
    original, scaled = rescaled_rows(
        model, 0, [factor], data, lambda m: indicators(m, initial, probe)
    )
    if original["factor"] != 1.0:
        original, scaled = scaled, original
    changes = {}
    for name in INDICATORS:
        a, b = original[name], scaled[name]
        rel = None if a is None or b is None else abs(b - a) / max(abs(a), 1e-300)
        changes[name] = {"original": a, "rescaled": b, "relative_change": rel}
    return {"max_output_change": scaled["max_output_change"], "indicators": changes}

"""Critical sample ratio (Arpit et al. 2017, "A closer look at memorization").

An input x is *critical* when some point of the L∞ box of half-width ``radius`` around
it gets a different predicted label than x: the decision boundary passes close to it.
Networks fitting noise have more critical samples (a more complex boundary).

Finding such a point is a search. We run projected signed-gradient ascent (PGD) on the
margin ``max_{c != y} z_c - z_y`` (z: logits, y: the label predicted at x) from a seeded
uniform random start in the box, projecting onto the box after each step, and stop for
an example as soon as its label flips. The search can miss a flip, so the ratio is a
lower bound on the true fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad

from dlprobe import DlprobeError
from dlprobe.measure._functional import buffers_of, check_data, eval_mode


@dataclass(frozen=True)
class CriticalSampleRatio:
    """Fraction of critical inputs, which inputs are critical (bool (n,), on CPU), radius."""

    ratio: float
    is_critical: torch.Tensor
    radius: float


def critical_sample_ratio(
    model: nn.Module,
    x: torch.Tensor,
    radius: float,
    steps: int = 20,
    step_size: float | None = None,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
) -> CriticalSampleRatio:
    """Fraction of inputs whose predicted label changes somewhere in their L∞ ball.

    Args:
        model: a classifier returning logits (n, C), C >= 2; evaluated in eval mode,
            left untouched.
        x: inputs (n, ...), floating point, on the model's device.
        radius: half-width of the L∞ box around each input (input units), > 0.
        steps: signed-gradient steps per restart.
        step_size: length of each step per coordinate; default ``2.5 * radius / steps``
            (Madry et al.), enough to cross the box.
        restarts: independent random starts; an input is critical if any finds a flip.
        seed: seed of the random starts.
        batch_size: inputs searched at once (default: all).

    Returns:
        ``CriticalSampleRatio``.
    """
    check_data(model, x)
    if not x.is_floating_point():
        raise DlprobeError(f"x must be floating point, got {x.dtype}")
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise DlprobeError(f"radius must be a positive finite number, got {radius}")
    if steps < 1 or restarts < 1:
        raise DlprobeError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    if step_size is None:
        step_size = 2.5 * radius / steps
    if step_size <= 0:
        raise DlprobeError(f"step_size must be > 0, got {step_size}")
    if batch_size is not None and batch_size < 1:
        raise DlprobeError(f"batch_size must be >= 1, got {batch_size}")

    params = {n: p.detach() for n, p in model.named_parameters()}
    bufs = buffers_of(model)

    def logits_of(inp: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (params, bufs), (inp,))  # (b, C)

    def margin_sum(inp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = logits_of(inp)  # (b, C)
        z_label = z.gather(1, labels[:, None]).squeeze(1)  # (b,)
        z_other = z.scatter(1, labels[:, None], -math.inf).amax(dim=1)  # (b,)
        # Examples are independent in eval mode, so the gradient of the sum is per example.
        return (z_other - z_label).sum()

    margin_grad = grad(margin_sum)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    size = batch_size or x.shape[0]
    flags = []
    with eval_mode(model):
        for xb in x.split(size):  # (b, ...)
            with torch.no_grad():
                z = logits_of(xb)
            if z.ndim != 2 or z.shape[1] < 2:
                raise DlprobeError(
                    f"the model must return class logits (n, C) with C >= 2, got {tuple(z.shape)}"
                )
            labels = z.argmax(dim=1)  # (b,)
            critical = torch.zeros(len(xb), dtype=torch.bool, device=x.device)
            for _ in range(restarts):
                start = torch.rand(xb.shape, generator=gen, device=x.device, dtype=x.dtype)
                delta = (2 * start - 1) * radius  # (b, ...)
                for step in range(steps + 1):
                    active = (~critical).nonzero().squeeze(1)  # (a,) still searching
                    if len(active) == 0:
                        break
                    x_try = xb[active] + delta[active]  # (a, ...)
                    with torch.no_grad():
                        flipped = logits_of(x_try).argmax(dim=1) != labels[active]
                    critical[active[flipped]] = True
                    if step == steps:
                        break
                    g = margin_grad(x_try, labels[active])  # (a, ...)
                    moved = delta[active] + step_size * g.sign()
                    delta[active] = moved.clamp(-radius, radius)
            flags.append(critical.cpu())
    is_critical = torch.cat(flags)
    return CriticalSampleRatio(is_critical.float().mean().item(), is_critical, float(radius))

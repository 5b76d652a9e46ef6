"""Parameter counts, and widths that meet a parameter budget at a given depth."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dlprobe import DlprobeError


def count_params(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def solve_width(count: Callable[[int], int], target: int, max_width: int = 1 << 16) -> int:
    """The width w >= 1 whose ``count(w)`` is closest to ``target`` (count increasing in w)."""
    lo, hi = 1, max_width
    while lo < hi:  # smallest w with count(w) >= target
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [w for w in (lo - 1, lo) if w >= 1]
    return min(candidates, key=lambda w: abs(count(w) - target))


def mlp_param_count(widths: list[int], activation: str = "relu") -> int:
    pieces = 2 if activation == "maxout" else 1
    total = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        out = b if i == len(widths) - 2 else b * pieces
        total += a * out + out
    return total


def mlp_widths_for_budget(
    n_in: int, n_out: int, depth: int, target: int, activation: str = "relu", tolerance=0.02
) -> list[int]:
    """Layer widths ``[n_in, w, ..., w, v, n_out]`` with ``depth`` hidden layers whose
    parameter count is within ``tolerance`` of ``target``.

    All hidden layers share the width w except the last, whose width v is tuned to hit
    the budget (equal widths alone are too coarse for deep nets: 1000 parameters at depth
    4 is 970 at w = 17 and 1 076 at w = 18).

    Raises:
        DlprobeError: the budget is too small for this depth (even width 1 exceeds it by
            more than the tolerance) or cannot be met within the tolerance.
    """
    if depth < 1:
        raise DlprobeError(f"depth (hidden layers) must be >= 1, got {depth}")

    def count(widths: list[int]) -> int:
        return mlp_param_count([n_in, *widths, n_out], activation)

    w = solve_width(lambda w: count([w] * depth), target)
    candidates = []
    for base in {max(1, w - 1), w, w + 1}:
        head = [base] * (depth - 1)
        v = solve_width(lambda v, head=head: count([*head, v]), target)
        candidates.append([*head, v])
    best = min(candidates, key=lambda ws: (abs(count(ws) - target), -min(ws)))
    got = count(best)
    if abs(got - target) > tolerance * target:
        smallest = count([1] * depth)
        if smallest > target:
            raise DlprobeError(
                f"a parameter budget of {target} is too small for {depth} hidden layers "
                f"(width 1 already has {smallest} parameters)"
            )
        raise DlprobeError(
            f"no MLP with {depth} hidden layers has {target} parameters within "
            f"{tolerance:.0%} (closest: widths {best}, {got} parameters)"
        )
    return [n_in, *best, n_out]

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
    """Layer widths ``[n_in, w, ..., w, n_out]`` with ``depth`` hidden layers of equal width
    whose parameter count is within ``tolerance`` of ``target``.

    Raises:
        DlprobeError: the budget is too small for this depth (even width 1 exceeds it by
            more than the tolerance) or cannot be met within the tolerance.
    """
    if depth < 1:
        raise DlprobeError(f"depth (hidden layers) must be >= 1, got {depth}")

    def count(w: int) -> int:
        return mlp_param_count([n_in, *[w] * depth, n_out], activation)

    w = solve_width(count, target)
    got = count(w)
    if abs(got - target) > tolerance * target:
        smallest = count(1)
        if smallest > target:
            raise DlprobeError(
                f"a parameter budget of {target} is too small for {depth} hidden layers "
                f"(width 1 already has {smallest} parameters)"
            )
        raise DlprobeError(
            f"no equal-width MLP with {depth} hidden layers has {target} parameters within "
            f"{tolerance:.0%} (closest: width {w}, {got} parameters)"
        )
    return [n_in, *[w] * depth, n_out]

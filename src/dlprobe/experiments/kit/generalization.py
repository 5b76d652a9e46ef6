"""What the generalization experiments (minimal-ratio, random-labels, params-vs-generalization)
share when they read their results: a Pearson correlation over finite pairs, and the
report's line on runs that diverged."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Pearson's r over the pairs where both are finite, and their number n.

    NaN when fewer than 3 pairs remain or either side is constant (r is undefined).
    """
    pairs = [
        (a, b)
        for a, b in zip(x, y, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return float("nan"), len(pairs)
    a, b = np.array(pairs, dtype=float).T  # (n,), (n,)
    return float(np.corrcoef(a, b)[0, 1]), len(pairs)


def diverged_lines(rows: Sequence[dict], consequence: str) -> list[str]:
    """The report's line on runs whose loss turned NaN/inf, or nothing when there are none."""
    n = sum(1 for r in rows if r["diverged"])
    return [f"{n} run(s) diverged and {consequence}."] if n else []

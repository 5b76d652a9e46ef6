"""Rank correlations of a generalization indicator with the generalization gap.

Following Jiang et al. (2019, "Fantastic generalization measures and where to find them"):

- ``kendall_tau``: over n models, ``tau = sum_{i != j} sign(m_i - m_j) sign(g_i - g_j) /
  (n (n - 1))`` (their eq. 3; tau-a: a tie on either side counts as neither agreement nor
  disagreement), for an indicator m and the gap g;
- ``granulated_tau``: for each hyperparameter axis, the models are grouped by the values
  of every OTHER axis, so that the models of a group differ only in that axis; the axis's
  value is the mean over groups of the tau within each group (their eq. 4, groups with
  fewer than 2 models or a tau that is undefined are skipped), and Psi is the mean over
  axes;
- ``bootstrap_interval``: a percentile interval of tau over models resampled with
  replacement (seeded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .stats import group_rows


def _signs(v: np.ndarray) -> np.ndarray:
    """(..., n, n) sign(v_i - v_j) of the last axis of v (..., n)."""
    return np.sign(v[..., :, None] - v[..., None, :])


def _pairs(x: Sequence, y: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The entries where both x and y are finite numbers, as float arrays."""
    keep = [
        (a, b)
        for a, b in zip(x, y, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    both = np.asarray(keep, dtype=float).reshape(-1, 2)
    return both[:, 0], both[:, 1]


def kendall_tau(x: Sequence, y: Sequence) -> float:
    """Jiang et al.'s tau between x and y over the pairs where both are finite (NaN when
    fewer than 2 remain)."""
    a, b = _pairs(x, y)
    n = a.size
    if n < 2:
        return math.nan
    return float((_signs(a) * _signs(b)).sum() / (n * (n - 1)))


def granulated_tau(
    rows: Sequence[dict], indicator: str, gap: str, axes: Sequence[str]
) -> tuple[dict[str, dict], float]:
    """Per axis ``{"tau": mean tau within groups, "groups": groups counted}``, and Psi, the
    mean of the axes' values that are defined (NaN when none is)."""
    per_axis = {}
    for axis in axes:
        others = [a for a in axes if a != axis]
        taus = [
            kendall_tau([r[indicator] for r in rs], [r[gap] for r in rs])
            for rs in group_rows(rows, *others).values()
            if len(rs) >= 2
        ]
        taus = [t for t in taus if math.isfinite(t)]
        per_axis[axis] = {"tau": float(np.mean(taus)) if taus else math.nan, "groups": len(taus)}
    defined = [v["tau"] for v in per_axis.values() if math.isfinite(v["tau"])]
    return per_axis, float(np.mean(defined)) if defined else math.nan


def bootstrap_interval(
    x: Sequence, y: Sequence, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """The ``level`` percentile interval of ``kendall_tau`` over ``resamples`` resamples of
    the finite pairs with replacement (NaN, NaN when fewer than 2 pairs remain)."""
    a, b = _pairs(x, y)
    n = a.size
    if n < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # (B, n)
    taus = []
    for chunk in np.array_split(idx, max(1, resamples * n * n // 4_000_000)):  # memory
        agree = _signs(a[chunk]) * _signs(b[chunk])  # (b, n, n)
        taus.append(agree.sum(axis=(1, 2)) / (n * (n - 1)))
    lo, hi = np.quantile(np.concatenate(taus), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)

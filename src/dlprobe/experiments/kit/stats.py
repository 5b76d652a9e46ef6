"""Small statistics over tidy result rows: grouping, mean and spread, trends, formatting."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import spearmanr


def finite(values: Iterable) -> np.ndarray:
    """The finite numbers among ``values`` (None, NaN and infinities dropped)."""
    return np.asarray(
        [v for v in values if v is not None and math.isfinite(v)], dtype=float
    ).reshape(-1)


def mean_std(values: Iterable) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN when there are none)."""
    v = finite(values)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def group_rows(rows: Sequence[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def column(rows: Sequence[dict], key: str) -> np.ndarray:
    """``key`` of every row as floats (None -> NaN)."""
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)


def series(rows: Sequence[dict], x: str, y: str, run: str = "seed") -> tuple[list, np.ndarray]:
    """(x values, array (n_runs, len(x))) from tidy rows of several runs."""
    by_run = group_rows(rows, run)
    xs = [r[x] for r in next(iter(by_run.values()))]
    return xs, np.array(
        [[np.nan if r[y] is None else r[y] for r in rs] for rs in by_run.values()], dtype=float
    )


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """(n, 2) the pairs where both are finite (None and NaN dropped)."""
    pairs = [
        (a, b)
        for a, b in zip(x, y, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    return np.array(pairs, dtype=float).reshape(-1, 2)


def _varies(pairs: np.ndarray) -> bool:
    """A correlation is defined: at least 3 pairs, neither side constant."""
    return len(pairs) >= 3 and np.ptp(pairs[:, 0]) > 0 and np.ptp(pairs[:, 1]) > 0


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Spearman's rho over the pairs where both are finite, and their number n (rho is
    NaN when fewer than 3 pairs remain or either side is constant)."""
    p = _finite_pairs(x, y)
    return (float(spearmanr(p[:, 0], p[:, 1])[0]) if _varies(p) else float("nan")), len(p)


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Pearson's r over the pairs where both are finite, and their number n (r is NaN
    when fewer than 3 pairs remain or either side is constant)."""
    p = _finite_pairs(x, y)
    return (float(np.corrcoef(p[:, 0], p[:, 1])[0, 1]) if _varies(p) else float("nan")), len(p)


def diverged_lines(
    rows: Sequence[dict],
    consequence: str = "were frozen (see results.json)",
    keys: Sequence[str] = (),
) -> list[str]:
    """The report's line naming the runs that diverged, or nothing when none did.

    Each run is named by ``keys`` of its row (e.g. "model", "batch_size") and its seed,
    with when (epochs completed) and why it was declared diverged, where rows say so.
    """
    bad = [r for r in rows if r.get("diverged")]
    if not bad:
        return []
    names = []
    for r in bad:
        when, why = r.get("diverged_at_epoch"), r.get("diverged_reason")
        names.append(
            ", ".join([*(f"{k} {r[k]}" for k in keys), f"seed {r['seed']}"])
            + (f" after {when} epoch(s)" if when is not None else "")
            + (f" ({why})" if why else "")
        )
    return [f"{len(bad)} run(s) diverged and {consequence}: {'; '.join(names)}."]


def sci(v) -> str:
    """A number in scientific notation, or "nan"."""
    return "nan" if v is None or not math.isfinite(v) else f"{v:.2e}"


def seeds_from(base_seed: int, n: int) -> list[int]:
    """The seeds of ``n`` runs: base, base + 1, ..."""
    return [base_seed + i for i in range(n)]

"""Reading a batch-size comparison back: which runs count, by protocol and batch size,
and the trends over batch size (Spearman's rho) that the reports quote."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

from ..stats import column, finite, group_rows, mean_std
from .protocol import PROTOCOLS

P_TREND = 0.05  # a trend counts as a rise or a fall when Spearman's p is below this


NO_TREND = "shows no clear trend"


def protocols_of(runs: Sequence[dict]) -> list[str]:
    """The protocols the runs were trained under, in PROTOCOLS order."""
    return [p for p in PROTOCOLS if any(r["protocol"] == p for r in runs)]


def counts(run: dict) -> bool:
    """Whether a run enters its protocol's statistics: under ``converged`` if it met the
    target; under ``epochs`` and ``steps``, as in the homework's protocol, if it trained
    (not diverged or collapsed), whatever it reached."""
    ok = ("fine",) if run["protocol"] == "converged" else ("fine", "not converged")
    return run["status"] in ok


def counted(runs: Sequence[dict], protocol: str) -> list[dict]:
    """The runs of ``protocol`` that enter its statistics (see ``counts``)."""
    return [r for r in runs if r["protocol"] == protocol and counts(r)]


def main_runs(runs: Sequence[dict]) -> list[dict]:
    """The counted runs of the main protocol (the first of ``protocols_of``)."""
    return counted(runs, protocols_of(runs)[0])


def left_out(runs: Sequence[dict]) -> list[dict]:
    """Runs that missed the target or failed, in every protocol."""
    return [r for r in runs if r["status"] != "fine"]


def batch_sizes_of(runs: Sequence[dict]) -> list[int]:
    """The batch sizes of the runs, ascending (the full batch as its size)."""
    return sorted({r["batch_size"] for r in runs})


def by_batch(runs: Sequence[dict], metric: str) -> tuple[list[int], np.ndarray]:
    """Batch sizes (ascending) and ``metric`` as an array (n_seeds, n_batch_sizes), NaN
    where a batch size has fewer runs than the largest group."""
    groups = group_rows(runs, "batch_size")
    sizes = sorted(b for (b,) in groups)
    out = np.full((max((len(g) for g in groups.values()), default=0), len(sizes)), np.nan)
    for j, b in enumerate(sizes):
        values = column(groups[(b,)], metric)
        out[: len(values), j] = values
    return sizes, out


def at_batch(runs: Sequence[dict], metric: str, batch: int) -> tuple[float, float]:
    """Mean and standard deviation of ``metric`` over the seeds of one batch size."""
    return mean_std(r[metric] for r in runs if r["batch_size"] == batch)


def trend(runs: Sequence[dict], metric: str, x: str = "batch_size") -> tuple[float, float, int]:
    """Spearman's rho of ``metric`` with log ``x`` over the runs where both are finite, its
    two-sided p-value, and n (NaN rho and p below 3 pairs or with a constant side)."""
    pairs = [
        (math.log(r[x]), r[metric])
        for r in runs
        if r[metric] is not None and math.isfinite(r[metric]) and r[x] > 0
    ]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return math.nan, math.nan, len(pairs)
    res = spearmanr(*zip(*pairs, strict=True))
    return float(res.statistic), float(res.pvalue), len(pairs)


def direction(rho: float, p: float) -> str:
    """The direction of a trend: rises, falls, or "shows no clear trend" (p >= P_TREND)."""
    if not math.isfinite(rho) or not p < P_TREND:
        return NO_TREND
    return "rises" if rho > 0 else "falls"


def trend_text(runs: Sequence[dict], metric: str) -> str:
    """``trend`` in words: "ρ = +0.52, p = 0.01, n = 24"."""
    rho, p, n = trend(runs, metric)
    return f"ρ = {rho:+.2f}, p = {p:.2g}, n = {n}"


def batch_summary(runs: Sequence[dict], means: Sequence[str], trends: Sequence[str]) -> dict:
    """Headline numbers per protocol, over its counted runs: the mean of each of ``means``
    at the smallest and the largest batch size, and the trend of each of ``trends``."""
    out: dict = {"batch sizes": batch_sizes_of(runs)}
    for protocol in protocols_of(runs):
        rs = counted(runs, protocol)
        out[f"{protocol}: runs counted / trained"] = [
            len(rs),
            sum(r["protocol"] == protocol for r in runs),
        ]
        if not rs:
            continue
        lo, hi = batch_sizes_of(rs)[0], batch_sizes_of(rs)[-1]
        for metric in means:
            out[f"{protocol}: {metric}: mean at batch {lo} / {hi}"] = [
                at_batch(rs, metric, lo)[0],
                at_batch(rs, metric, hi)[0],
            ]
        for metric in trends:
            out[f"{protocol}: {metric}: Spearman r with log batch size"] = trend(rs, metric)[0]
    return out


def value_range(values: np.ndarray, fmt: str) -> str:
    """Finite values as "lo-hi" in ``fmt``, one number when equal, "none" when empty."""
    values = finite(values)
    if not values.size:
        return "none"
    lo, hi = values.min(), values.max()
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def span(values: np.ndarray) -> str:
    """Whole numbers as "lo-hi", one number when they are all equal, "none" when empty."""
    values = finite(values)
    if not values.size:
        return "none"
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def spearman_p(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Spearman's rho of two columns over the pairs where both are finite, its p-value, n."""
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or len(set(x[keep])) < 2 or len(set(y[keep])) < 2:
        return math.nan, math.nan, int(keep.sum())
    res = spearmanr(x[keep], y[keep])
    return float(res.statistic), float(res.pvalue), int(keep.sum())

"""Pieces for experiments on critical points: where each run stops, which runs reached a
critical point, the minimal ratio under a zero tolerance that follows the gradient norm,
and the drawings of Hessian spectra and of the Newton search.

Run rows carry ``grad_norm`` (float64, where the search ended), ``loss``, ``diverged`` and
``outcome`` (``FINE`` = at a critical point, ``NOT_CONVERGED`` = the search stopped above
the gradient criterion, ``DIVERGED``; the names of ``kit.outcomes``); results carry
``spectra`` (rows with ``eigenvalues``) and ``search`` (rows with the |g| history).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from dlprobe.measure._functional import unflatten
from dlprobe.measure.critical_points import zero_tolerance
from dlprobe.measure.gradient import population_loss
from dlprobe.measure.hessian import population_hessian_eigenvalues
from dlprobe.measure.minimal_ratio import minimal_ratio, minimal_ratio_by_sampling
from dlprobe.train import TrainConfig

from .outcomes import DIVERGED, FINE, NOT_CONVERGED
from .plotting import COLORS, new_figure, no_data
from .stats import column, sci

AT_CRITICAL = {FINE: "at a critical point", NOT_CONVERGED: "no critical point reached"}
# Phase 2 of critical-points and saddle-escape: full-batch Adam on the squared gradient norm,
# each run frozen once its norm is below stop_below_grad_norm (checked every 10 epochs)
GRAD_NORM_PHASE = TrainConfig(
    lr=1e-3,
    epochs=1500,
    batch_size=0,
    objective="grad_norm_sq",
    stop_below_grad_norm=1e-3,
    eval_every_epochs=10,
)
OUTCOME_COLORS = {FINE: COLORS[0], NOT_CONVERGED: COLORS[1], DIVERGED: COLORS[3]}


def draw_lengths(seed: int, n: int, min_epochs: int, train: TrainConfig) -> list[int]:
    """Phase-1 length of each of ``n`` runs: log-uniform in [min_epochs, train.epochs],
    rounded to the snapshot grid (multiples of ``train.snapshot_every_epochs``); run k's
    draw uses seed + k, so a run's length does not depend on how many runs there are."""
    every, out = train.snapshot_every_epochs, []
    lo, hi = math.log(min_epochs), math.log(train.epochs)
    for k in range(n):
        u = float(torch.rand(1, generator=torch.Generator().manual_seed(seed + k)))
        epochs = round(math.exp(lo + u * (hi - lo)) / every) * every
        out.append(min(max(epochs, every), train.epochs - train.epochs % every))
    return out


def outcome_of(row: dict, grad_tol: float) -> str:
    """DIVERGED, FINE (float64 |g| < grad_tol: at a critical point) or NOT_CONVERGED."""
    if row["diverged"]:
        return DIVERGED
    g = row["grad_norm"]
    return FINE if g is not None and math.isfinite(g) and g < grad_tol else NOT_CONVERGED


def critical_mask(results: dict) -> np.ndarray:
    """(K,) bool: which runs are at a critical point."""
    return np.array([r["outcome"] == FINE for r in results["runs"]], dtype=bool)


def ratios_at(results: dict, per_grad: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Eigenvalue minimal ratio of the runs in ``mask`` (default: at critical points),
    recomputed from the saved spectra with the zero tolerance ``zero_tolerance(per_grad)``."""
    mask = critical_mask(results) if mask is None else mask
    if not mask.any():
        return np.zeros(0)
    # saved NaNs come back from JSON as None; numpy turns them into NaN again
    eigs = torch.from_numpy(np.array([s["eigenvalues"] for s in results["spectra"]], dtype=float))
    g = torch.from_numpy(column(results["runs"], "grad_norm"))
    keep = torch.as_tensor(mask)
    tol = zero_tolerance(eigs[keep], g[keep], per_grad)  # (n,)
    return np.array(
        [minimal_ratio(e, tol=float(t)).positive for e, t in zip(eigs[keep], tol, strict=True)]
    )


def loss_spread(loss: np.ndarray) -> tuple[float, float, float]:
    """(10th percentile, 90th percentile, their ratio) of the finite positive losses."""
    v = loss[np.isfinite(loss) & (loss > 0)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    p10, p90 = np.percentile(v, [10, 90])
    return float(p10), float(p90), float(p90 / p10)


def probe_points(
    found: dict, model: nn.Module, x, y, n_samples: int, radius: float, seeds, log
) -> dict:
    """MSE losses (at ``found["start"]`` and ``found["params"]``), exact float64 Hessian
    spectra and sampled minimal ratios (seed: the run's) at the (K, P) float64 points
    ``found["params"]``; rows that are not finite (diverged runs) get NaN."""
    x, y = x.double().cpu(), y.double().cpu()
    model = model.double()
    flat = found["params"]  # (K, P) float64
    ok = torch.isfinite(flat).all(1)  # (K,)

    def stacked(points: torch.Tensor) -> dict:  # {name: (K, ...)}, NaN rows as zeros
        return vmap(lambda t: unflatten(model, t))(torch.where(ok[:, None], points, 0.0))

    log(f"exact Hessians (float64) of {len(flat)} runs")
    eigs = population_hessian_eigenvalues(model, stacked(flat), F.mse_loss, x, y)  # (K, P)
    eigs[~ok] = math.nan
    loss = [
        population_loss(model, stacked(p), F.mse_loss, x, y).masked_fill(~ok, math.nan).tolist()
        for p in (flat, found["start"])
    ]
    log(f"sampling {n_samples} neighbours at radius {radius:g} per run")
    sampled = []
    for k, seed in enumerate(seeds):
        if not ok[k]:
            sampled.append(dict.fromkeys(("ratio", "lower", "ties", "stderr"), math.nan))
            continue
        torch.nn.utils.vector_to_parameters(flat[k], model.parameters())
        s = minimal_ratio_by_sampling(model, F.mse_loss, x, y, n_samples, radius, seed)
        sampled.append({"ratio": s.higher, "lower": s.lower, "ties": s.ties, "stderr": s.stderr})
    return {"eigenvalues": eigs, "loss": loss[0], "loss_start": loss[1], "sampled": sampled}


def ratio_vs_tolerance_figure(results: dict, per_grads, groups: dict, used: float):
    """Eigenvalue minimal ratio of the critical points in each group (name -> (K,) mask)
    against c of the zero rule |λ| <= c·|g|: median and min-max band; a square at the
    left for round-off only (c = 0); a dashed line at the c used."""
    fig, ax = new_figure(width=6.5, height=4.2)
    crit = critical_mask(results)
    if not crit.any():
        no_data(ax, "no run reached a critical point")
        return fig
    for i, (label, mask) in enumerate(groups.items()):
        if not (mask := mask & crit).any():
            continue
        curves = np.array([ratios_at(results, c, mask) for c in per_grads])  # (C, n_group)
        ax.plot(per_grads, np.median(curves, 1), color=COLORS[i],
                label=f"{label}: median, band min-max (n={int(mask.sum())})")  # fmt: skip
        ax.fill_between(per_grads, curves.min(1), curves.max(1), color=COLORS[i], alpha=0.2, lw=0)
        at_zero = ratios_at(results, 0.0, mask)
        ax.plot([per_grads[0] / 10], [np.median(at_zero)], color=COLORS[i], marker="s")
    ax.axvline(used, color="black", ls="--", lw=0.8, label=f"c used = {used:g}")
    ax.set(xscale="log", ylim=(-0.03, 1.03), ylabel="minimal ratio (share of λ > c·|g|)",
           xlabel="c in the zero rule |λ| <= c·|g| (square at left: round-off only)",
           title=f"Minimal ratio under the zero rule ({int(crit.sum())} critical points)")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def search_figure(results: dict, grad_tol: float):
    """|g| against Newton step, one line per run, coloured by outcome."""
    fig, ax = new_figure(width=6.5, height=4.2)
    drawn = False
    for outcome, label in AT_CRITICAL.items():
        rows = [r for r in results["runs"] if r["outcome"] == outcome]
        for i, r in enumerate(rows):
            h = np.array(results["search"][r["run"]]["grad_norm"], dtype=float)
            last = int(r["newton_steps"]) + 1  # the history repeats its end after a stop
            ax.plot(range(last), np.maximum(h[:last], 1e-300), color=OUTCOME_COLORS[outcome],
                    lw=0.8, alpha=0.6, label=f"{label} (n={len(rows)})" if i == 0 else None)  # fmt: skip
            drawn = True
    if not drawn:
        no_data(ax, "no run to search from (every run diverged)")
        return fig
    ax.axhline(grad_tol, color="black", ls="--", lw=0.8, label=f"criterion |g| = {grad_tol:g}")
    ax.set(yscale="log", xlabel="Newton (Levenberg-Marquardt) step", ylabel="|grad L| (float64)",
           title=f"Phase 2: driving the gradient to zero ({len(results['runs'])} runs)")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def spectra_figure(results: dict):
    """Sorted exact spectra (symlog) of the lowest-, median- and highest-loss runs at
    critical points, with each one's zero band."""
    fig, ax = new_figure(width=6.5, height=4.4)
    rows = sorted((r for r in results["runs"] if r["outcome"] == FINE), key=lambda r: r["loss"])
    if not rows:
        no_data(ax, "no run reached a critical point")
        return fig
    picks = {"lowest loss": rows[0], "median loss": rows[len(rows) // 2], "highest": rows[-1]}
    tol = max(r["eig_tol"] for r in picks.values())
    for i, (label, r) in enumerate(picks.items()):
        lam = np.sort(np.array(results["spectra"][r["run"]]["eigenvalues"], dtype=float))
        ax.plot(np.arange(1, lam.size + 1), lam, marker="o", ms=2.5, lw=0.8, color=COLORS[i],
                label=f"{label}: seed {r['seed']}, loss {sci(r['loss'])}, "
                f"ratio {r['minimal_ratio']:.2f}")  # fmt: skip
    ax.axhspan(-tol, tol, color="grey", alpha=0.25, lw=0, label=f"counted as zero (<= {tol:.1e})")
    ax.set_yscale("symlog", linthresh=tol, linscale=1.0)
    (lo, hi), first = ax.get_ylim(), math.floor(math.log10(tol)) + 1
    ticks = [0.0] + [  # every other power of ten beyond the zero band, on both sides
        sign * 10.0**d
        for sign, end in ((1, hi), (-1, lo))
        if sign * end > tol
        for d in range(first, math.ceil(math.log10(sign * end)) + 1, 2)
    ]
    ax.set_yticks(sorted(ticks))
    ax.minorticks_off()
    ax.set(xlabel="eigenvalue index (ascending)", ylabel="Hessian eigenvalue (symlog)",
           title=f"Exact Hessian spectra (float64) at 3 of {len(rows)} critical points")  # fmt: skip
    ax.legend(fontsize=7.5, loc="upper left")
    return fig

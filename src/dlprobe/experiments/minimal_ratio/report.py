"""minimal-ratio: headline numbers, observations and settings for the report."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from dlprobe.experiments.common import sci
from dlprobe.experiments.minimal_ratio.protocol import (
    LOW_LOSS,
    Config,
    column,
    loss_groups,
    ratios_at,
)

# The homework's example (SPEC): runs with loss < 0.01 had minimal ratios of about
# 0.3-0.55, runs at loss ~ 0.09 had 0-0.23.
HOMEWORK_LOW, HOMEWORK_HIGH = (0.3, 0.55), (0.0, 0.23)


def _correlations(loss: np.ndarray, ratio: np.ndarray) -> tuple[float, float, int]:
    """Pearson r of (log10 loss, ratio), Spearman rho, and n (finite pairs only)."""
    ok = np.isfinite(loss) & (loss > 0) & np.isfinite(ratio)
    lx, r = np.log10(loss[ok]), ratio[ok]
    if ok.sum() < 3 or np.ptp(lx) == 0 or np.ptp(r) == 0:
        return float("nan"), float("nan"), int(ok.sum())
    return float(np.corrcoef(lx, r)[0, 1]), float(stats.spearmanr(lx, r)[0]), int(ok.sum())


def _range(values: np.ndarray) -> tuple[float, float, float] | None:
    """(min, median, max), or None when empty."""
    v = values[np.isfinite(values)]
    return (float(v.min()), float(np.median(v)), float(v.max())) if v.size else None


def _fmt_range(rng: tuple[float, float, float] | None) -> str:
    return "none" if rng is None else f"{rng[0]:.2f}-{rng[2]:.2f} (median {rng[1]:.2f})"


def summarize(results: dict) -> dict:
    setup = results["setup"][0]
    loss = column(results, "loss")
    out = {
        "runs": len(results["runs"]),
        "parameters per model": setup["params"],
        f"runs reaching grad norm < {setup['grad_norm_threshold']:g}": sum(
            r["reached_threshold"] for r in results["runs"]
        ),
        "median grad norm after loss phase / after grad-norm phase": [
            float(np.nanmedian(column(results, "grad_norm_after_loss_phase"))),
            float(np.nanmedian(column(results, "grad_norm"))),
        ],
        "final loss min / median / max": list(_range(loss) or []),
    }
    for key, name in (("minimal_ratio", "eigenvalues"), ("sampled_ratio", "sampling")):
        ratio = column(results, key)
        r, rho, n = _correlations(loss, ratio)
        out[f"minimal ratio ({name}) min / median / max"] = list(_range(ratio) or [])
        out[f"minimal ratio ({name}) vs log loss: Pearson r / Spearman rho"] = [r, rho]
        for label, mask in loss_groups(results).items():
            out[f"minimal ratio ({name}), {label}: n / min / median / max"] = [
                int(mask.sum()),
                *(_range(ratio[mask]) or []),
            ]
    out["median minimal ratio at tol 0 / used / rel. 1e-6"] = [
        float(np.median(ratios_at(results, t))) for t in (0.0, setup["eig_rel_tol"], 1e-6)
    ]
    return out


def observations(results: dict) -> list[str]:
    setup = results["setup"][0]
    n, params = len(results["runs"]), setup["params"]
    loss = column(results, "loss")
    lines = []
    g1 = np.nanmedian(column(results, "grad_norm_after_loss_phase"))
    g2 = np.nanmedian(column(results, "grad_norm"))
    reached_loss = np.array([r["loss"] for r in results["runs"] if r["reached_threshold"]])
    change = f"{g1 / g2:.1f}x lower" if g2 < g1 else f"{g2 / g1:.1f}x higher"
    lines.append(
        f"Minimizing the squared gradient norm changed the median gradient norm from "
        f"{sci(g1)} to {sci(g2)} ({change}) over {n} runs; {reached_loss.size} of {n} runs "
        f"reached |grad| < {setup['grad_norm_threshold']:g}"
        + (
            f", at losses from {sci(reached_loss.min())} to {sci(reached_loss.max())}."
            if reached_loss.size
            else "."
        )
    )
    groups = loss_groups(results)
    for key, name in (("minimal_ratio", "eigenvalues"), ("sampled_ratio", "sampling")):
        ratio = column(results, key)
        r, rho, m = _correlations(loss, ratio)
        if math.isnan(r):
            trend = f"no correlation with log10 loss is defined over {m} runs"
        else:
            trend = (
                f"its correlation with log10 loss is r = {r:.2f} (Spearman {rho:.2f}) over {m} runs"
            )
        parts = "; ".join(
            f"{label}: {_fmt_range(_range(ratio[mask]))}, n = {int(mask.sum())}"
            for label, mask in groups.items()
        )
        lines.append(f"Minimal ratio by {name}: {trend}; {parts}.")
    ratio = column(results, "minimal_ratio")
    low, high = (_range(ratio[mask]) for mask in groups.values())
    lines.append(
        f"Beside the homework's example (loss < {LOW_LOSS:g}: about "
        f"{HOMEWORK_LOW[0]:g}-{HOMEWORK_LOW[1]:g}; loss ~0.09: {HOMEWORK_HIGH[0]:g}-"
        f"{HOMEWORK_HIGH[1]:g}), the eigenvalue ratios here are {_fmt_range(low)} for "
        f"loss < {LOW_LOSS:g} and {_fmt_range(high)} for loss >= {LOW_LOSS:g}."
    )
    top = float(np.nanmax(ratio))
    lines.append(
        f"The largest minimal ratio is {top:.2f} ({round(top * params)} of {params} "
        f"eigenvalues above the tolerance). Near zero loss the MSE Hessian is its "
        f"Gauss-Newton part, of rank <= {setup['n_points']} training points, so at most "
        f"{setup['n_points']}/{params} = {setup['n_points'] / params:.2f} of its eigenvalues "
        "can be clearly positive there."
    )
    at = [float(np.median(ratios_at(results, t))) for t in (0.0, setup["eig_rel_tol"], 1e-6)]
    zero = np.nanmedian(column(results, "zero_ratio"))
    lines.append(
        f"The eigenvalue ratio depends on the zero tolerance: its median over {n} runs is "
        f"{at[0]:.2f} by sign alone, {at[1]:.2f} with the tolerance used "
        f"({setup['eig_rel_tol']:g} x max|λ|; a median {100 * zero:.0f}% of eigenvalues count "
        f"as zero) and {at[2]:.2f} at 1e-06 x max|λ|."
    )
    sampled = np.nanmedian(column(results, "sampled_ratio"))
    crossover = np.nanmedian(
        2
        * column(results, "grad_norm")
        * math.sqrt(params)
        / np.abs(column(results, "hessian_trace"))
    )
    line = (
        f"By sampling at radius {setup['radius']:g} the median ratio is {sampled:.2f}, by "
        f"eigenvalues {np.nanmedian(ratio):.2f}. A random unit direction u sees the "
        f"curvature u'Hu ~ trace(H)/P, and the gradient term outweighs it below a radius of "
        f"about 2|g|√P/|trace(H)| (median {sci(crossover)} over {n} runs)"
    )
    if sampled > np.nanmedian(ratio):
        line += (
            "; the few large positive eigenvalues dominate the trace, so most directions curve up."
        )
    lines.append(line if line.endswith(".") else line + ".")
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    setup = results["setup"][0]
    return [
        (
            "model",
            f"MLP {'-'.join(map(str, setup['widths']))}, {cfg.activation} "
            f"({setup['params']} params)",
        ),
        (
            "data",
            f"{setup['formula']} on [{setup['domain'][0]:g}, {setup['domain'][1]:.4g}], "
            f"{cfg.n_points} evenly spaced points, MSE loss",
        ),
        ("phase 1 (loss)", f"{cfg.optimizer}, lr {cfg.lr:g}, full batch, {cfg.epochs} epochs"),
        (
            "phase 2 (squared gradient norm)",
            f"{cfg.optimizer}, lr {cfg.grad_lr:g}, full batch, until |grad| < "
            f"{cfg.grad_norm_threshold:g} (checked every {cfg.check_every_epochs} epochs; the "
            f"model is then frozen) or {cfg.grad_epochs} epochs",
        ),
        (
            "minimal ratio (eigenvalues)",
            f"exact float64 Hessian; fraction of eigenvalues > {cfg.eig_rel_tol:g} x max|λ| "
            "(absolute tolerance per run in results)",
        ),
        (
            "minimal ratio (sampling)",
            f"{cfg.n_samples} parameter vectors uniformly on the sphere of radius "
            f"{cfg.radius:g} around each final point; fraction with higher loss (float64)",
        ),
        (
            "seeds",
            f"{cfg.seeds} runs (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}), "
            "trained as one population",
        ),
    ]

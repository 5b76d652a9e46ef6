"""HW1-2 what happens when the gradient is almost zero: the minimal ratio against the loss.

Protocol: train many seeds of a small network (the homework's 1-10-10-1, 141 parameters) on
a sine as one population. Phase 1 (``train``) minimizes the loss; phase 2 (``critical``) the
squared gradient norm, until each model's norm is below a threshold (it is then frozen) or an
epoch limit. At every final point: loss and gradient norm, the exact Hessian spectrum (all
float64), and the minimal ratio by both definitions (share of eigenvalues above a tolerance;
share of random nearby parameter vectors with a higher loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch.nn.functional as F
from matplotlib.colors import LogNorm

from dlprobe.config import Bound, NonNegFloat, PosFloat, PosInt, Seed, require
from dlprobe.data import FUNCTIONS, Dataset
from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Experiment,
    FunctionName,
    Notes,
    RunContext,
    check_batch_sizes,
    column,
    mlp_population,
    new_figure,
    parse_widths,
    sci,
    spearman,
)
from dlprobe.experiments.kit.stats import pearson
from dlprobe.measure.gradient import population_gradient_norm, population_loss
from dlprobe.measure.hessian import population_hessian_eigenvalues
from dlprobe.measure.minimal_ratio import minimal_ratio, minimal_ratio_by_sampling
from dlprobe.models import mlp_param_count
from dlprobe.train import Population, TrainConfig

LOW_LOSS = 0.01  # runs below this final loss are "low-loss", as in the homework's example
# The homework's example (SPEC): loss < 0.01 gave ratios of about 0.3-0.55, loss ~0.09 0-0.23.
HOMEWORK_LOW, HOMEWORK_HIGH = (0.3, 0.55), (0.0, 0.23)
REL_TOLS = tuple(10.0**e for e in range(-14, -1))  # tolerances of ratio-vs-tolerance (and 0)
RATIOS = (("minimal_ratio", "eigenvalues"), ("sampled_ratio", "sampling"))  # (key, definition)


@dataclass(frozen=True)
class Config:
    model: str = "1-10-10-1"  # layer widths; the homework's 141-parameter network
    # hidden activation, non-linear (a linear net is the pitfall); with sigmoid more runs end
    # at higher-loss critical points than with tanh, which spreads the loss axis
    activation: Activation = "sigmoid"
    function: FunctionName = "sine"  # target function; sine = sin(x) on [0, 2π]
    n_points: Annotated[int, Bound(ge=2)] = 64  # training points, evenly spaced on the domain
    seeds: PosInt = 100  # training runs, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i
    # phase 1, minimizing the loss: full batch, evaluated at the end only
    train: TrainConfig = TrainConfig(lr=1e-2, epochs=1000, batch_size=0, eval_every_epochs=1000)
    # phase 2, minimizing the squared gradient norm (full batch) for at most epochs; a model
    # stops (frozen) once its norm is below stop_below_grad_norm, checked every eval_every_epochs
    critical: TrainConfig = TrainConfig(
        lr=1e-3,
        epochs=1500,
        batch_size=0,
        objective="grad_norm_sq",
        stop_below_grad_norm=1e-3,
        eval_every_epochs=10,
    )
    eig_rel_tol: NonNegFloat = 1e-9  # |eigenvalue| <= eig_rel_tol * max|eigenvalue| counts as 0
    n_samples: PosInt = 1000  # sampling definition: random parameter vectors per run
    radius: PosFloat = 1e-2  # sampling definition: distance of each sample (parameter 2-norm)

    def check(self) -> None:
        widths = parse_widths(self.model)
        require(
            widths[0] == 1 and widths[-1] == 1,
            f"model must have 1 input and 1 output (a 1-D function), got {self.model!r}",
        )
        threshold = self.critical.stop_below_grad_norm
        require(threshold > 0, f"critical.stop_below_grad_norm must be > 0, got {threshold}")
        check_batch_sizes([self.train.batch_size, self.critical.batch_size], self.n_points)


PROFILES = {
    "smoke": {
        "model": "1-4-4-1",
        "n_points": 16,
        "seeds": 6,
        "train.epochs": 40,
        "critical.epochs": 40,
        "critical.eval_every_epochs": 5,
        "n_samples": 64,
    },
    "full": {"critical.epochs": 10000, "n_samples": 5000},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    widths = parse_widths(cfg.model)
    data = ctx.function(cfg.function, cfg.n_points)
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    ctx.train("loss-phase", pop, data, cfg.train)
    loss_1, grad_norm_1 = _loss_and_grad_norm(pop, data)
    hist = ctx.train("grad-norm-phase", pop, data, cfg.critical)
    loss_2, grad_norm_2 = _loss_and_grad_norm(pop, data)
    measured = ctx.stage("probes", lambda _ckpt: _probes(cfg, ctx, pop, data))
    eigs = measured["eigenvalues"]  # (K, P) float64, ascending
    ratios = minimal_ratio(eigs, rel_tol=cfg.eig_rel_tol)
    runs = [
        {
            "run": k,
            "seed": seed,
            "loss_after_loss_phase": loss_1[k],
            "grad_norm_after_loss_phase": grad_norm_1[k],
            "loss": loss_2[k],
            "grad_norm": grad_norm_2[k],
            "reached_threshold": grad_norm_2[k] < cfg.critical.stop_below_grad_norm,
            "stopped_at_epoch": hist.stopped_at_epoch[k],
            "diverged": k in hist.diverged,
            "minimal_ratio": ratios[k].positive,
            "negative_ratio": ratios[k].negative,
            "zero_ratio": ratios[k].zero,
            "eig_tol": ratios[k].tol,
            "hessian_trace": float(eigs[k].sum()),
            **{f"sampled_{key}": v for key, v in measured["sampled"][k].items()},
        }
        for k, seed in enumerate(pop.seeds)
    ]
    flat, f = pop.flat_params().cpu(), FUNCTIONS[cfg.function]  # flat: (K, P)
    ids = list(enumerate(pop.seeds))
    return {
        "setup": {
            "widths": widths,
            "activation": cfg.activation,
            "params": mlp_param_count(widths, cfg.activation),
            **{"function": cfg.function, "formula": f.formula, "domain": list(f.domain)},
            "n_points": cfg.n_points,
            "grad_norm_threshold": cfg.critical.stop_below_grad_norm,
            **{k: getattr(cfg, k) for k in ("eig_rel_tol", "n_samples", "radius")},
        },
        "runs": runs,
        "spectra": [{"run": k, "seed": s, "eigenvalues": eigs[k].tolist()} for k, s in ids],
        "final_params": [{"run": k, "seed": s, "params": flat[k].tolist()} for k, s in ids],
        "seeds": pop.seeds,
    }


def _loss_and_grad_norm(pop: Population, data: Dataset) -> tuple[list[float], list[float]]:
    """Every model's loss and gradient norm in float64 (like the Hessian) where it stands."""
    params = {n: p.detach().double() for n, p in pop.params.items()}
    x, y = data.x_train.double(), data.y_train.double()
    loss = population_loss(pop.base, params, F.mse_loss, x, y)  # (K,)
    return loss.tolist(), population_gradient_norm(pop.base, params, F.mse_loss, x, y).tolist()


def _probes(cfg: Config, ctx: RunContext, pop: Population, data: Dataset) -> dict:
    """Exact Hessian spectra and sampled minimal ratios of every final model."""
    x, y = data.x_train, data.y_train
    ctx.log(f"exact Hessians (float64) of {pop.size} runs")
    eigs = population_hessian_eigenvalues(pop.base, pop.params, F.mse_loss, x, y)  # (K, P)
    ctx.log(f"sampling {cfg.n_samples} neighbours at radius {cfg.radius:g} per run")
    sampled = []  # plain dicts: a stage holds no dataclasses
    for k, seed in enumerate(pop.seeds):
        s = minimal_ratio_by_sampling(
            pop.model(k), F.mse_loss, x, y, cfg.n_samples, cfg.radius, seed=seed
        )
        sampled.append({"ratio": s.higher, "lower": s.lower, "ties": s.ties, "stderr": s.stderr})
    return {"eigenvalues": eigs.cpu(), "sampled": sampled}


def _col(results: dict, key: str) -> np.ndarray:
    return column(results["runs"], key)


def loss_groups(results: dict) -> dict[str, np.ndarray]:
    loss = _col(results, "loss")
    return {f"loss < {LOW_LOSS:g}": loss < LOW_LOSS, f"loss >= {LOW_LOSS:g}": loss >= LOW_LOSS}


def ratios_at(results: dict, rel_tol: float) -> np.ndarray:
    """Every run's eigenvalue minimal ratio recomputed from its saved spectrum."""
    eigs = np.array([s["eigenvalues"] for s in results["spectra"]], dtype=float)  # (K, P)
    return np.array([m.positive for m in minimal_ratio(eigs, rel_tol=rel_tol)])


def _ratio_vs_loss(results: dict):
    setup = results["setup"]
    loss, grad_norm = _col(results, "loss"), _col(results, "grad_norm")
    reached = np.array([r["reached_threshold"] for r in results["runs"]], dtype=bool)
    # constrained layout leaves room for the shared colour bar
    fig, axes = new_figure(ncols=2, width=5.6, height=4.6, layout="constrained", sharey=True)
    positive = grad_norm[np.isfinite(grad_norm) & (grad_norm > 0)]
    norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.01))
    titles = (
        f"eigenvalues: fraction > tol (rel. tol {setup['eig_rel_tol']:g})",
        f"sampling: fraction of {setup['n_samples']} neighbours\n"
        f"at radius {setup['radius']:g} with higher loss",
    )
    bound, thr = setup["n_points"] / setup["params"], setup["grad_norm_threshold"]
    markers = {  # runs that reached the gradient-norm threshold: dots; the others: crosses
        f"|grad| < {thr:g} reached": (reached, {"s": 28, "edgecolors": "black", "linewidths": 0.3}),
        "not reached": (~reached, {"marker": "x", "s": 30, "linewidths": 1.2}),
    }
    for ax, (key, _), title in zip(axes, RATIOS, titles, strict=True):
        for label, (mask, marker) in markers.items():
            colour = {"c": grad_norm[mask], "norm": norm, "cmap": "viridis"}
            label = f"{label} (n={int(mask.sum())})"
            sc = ax.scatter(loss[mask], _col(results, key)[mask], label=label, **colour, **marker)
        if key == "minimal_ratio":
            ax.axhline(bound, color="grey", ls=":", lw=1, label=f"points / params = {bound:.2f}")
        ax.axvline(LOW_LOSS, color="grey", ls="--", lw=0.8, label=f"loss = {LOW_LOSS:g}")
        ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="final training loss (MSE)", title=title)
    axes[0].set_ylabel("minimal ratio")
    legend = axes[0].legend(fontsize=8, loc="upper left")
    for handle in legend.legend_handles[:2]:  # the marker's shape, not its colour, says which
        handle.set_array(None)
        handle.set_facecolor("0.5")
    fig.colorbar(sc, ax=list(axes), label="final gradient norm (log)", shrink=0.9)
    fig.suptitle(
        f"Minimal ratio against loss: {len(loss)} runs of MLP "
        f"{'-'.join(map(str, setup['widths']))} ({setup['activation']}, {setup['params']} "
        f"params) on {setup['formula']}",
        fontsize=10,
    )
    return fig


def _symlog_ticks(tol: float, low: float, high: float) -> list[float]:
    """0 and every other power of ten from the tolerance out to the data, on both sides."""
    first, ticks = math.ceil(math.log10(max(tol, 1e-300))), [0.0]
    for sign, end in ((1, high), (-1, low)):
        if sign * end > tol:
            top = math.ceil(math.log10(sign * end))
            ticks += [sign * 10.0**d for d in range(first, top + 1, 2)]
    return sorted(ticks)


def _spectra(results: dict):
    fig, ax = new_figure(width=6.5, height=4.4)
    loss = _col(results, "loss")
    order = np.argsort(np.where(np.isfinite(loss), loss, np.inf))
    ok = order[np.isfinite(loss[order])]  # runs by ascending loss, finite ones only
    picks = {"lowest loss": ok[0], "median loss": ok[len(ok) // 2], "highest loss": ok[-1]}
    tol = max(results["runs"][k]["eig_tol"] for k in picks.values())
    for i, (label, k) in enumerate(picks.items()):
        r = results["runs"][k]
        lam = np.sort(np.array(results["spectra"][k]["eigenvalues"], dtype=float))  # (P,)
        label = f"{label}: run {k}, loss {sci(r['loss'])}, ratio {r['minimal_ratio']:.2f}"
        ax.plot(np.arange(1, lam.size + 1), lam, marker="o", ms=2.5, lw=0.8, color=COLORS[i],
                label=label)  # fmt: skip
    ax.axhspan(-tol, tol, color="grey", alpha=0.25, lw=0, label=f"|λ| <= tol (<= {tol:.1e})")
    ax.set_yscale("symlog", linthresh=max(tol, 1e-300), linscale=1.0)
    ax.set_yticks(_symlog_ticks(tol, *ax.get_ylim()))
    ax.minorticks_off()
    ax.set(xlabel="eigenvalue index (ascending)", ylabel="Hessian eigenvalue (symlog)",
           title=f"Exact Hessian spectra (float64) of 3 of {len(loss)} runs")  # fmt: skip
    ax.legend(fontsize=7.5, loc="upper left")
    return fig


def _ratio_vs_tolerance(results: dict):
    fig, ax = new_figure(width=6.5, height=4.2)
    for i, (label, mask) in enumerate(loss_groups(results).items()):
        if not mask.any():
            continue
        curves = np.array([ratios_at(results, t)[mask] for t in REL_TOLS])  # (T, n_group)
        ax.plot(REL_TOLS, np.median(curves, 1), color=COLORS[i],
                label=f"{label}: median, band min-max (n={int(mask.sum())})")  # fmt: skip
        ax.fill_between(REL_TOLS, curves.min(1), curves.max(1), color=COLORS[i], alpha=0.2, lw=0)
        at_zero = ratios_at(results, 0.0)[mask]  # (n_group,) sign only
        mid = np.median(at_zero)
        ax.errorbar([REL_TOLS[0] / 10], [mid], yerr=[[mid - at_zero.min()], [at_zero.max() - mid]],
                    color=COLORS[i], marker="s", capsize=3)  # fmt: skip
    used = results["setup"]["eig_rel_tol"]
    ax.axvline(used, color="black", ls="--", lw=0.8, label="tolerance used")
    ax.set(
        xscale="log",
        xlabel="tolerance relative to max|λ| (square at left: tol = 0, sign only)",
        ylabel="minimal ratio (fraction > tol)",
        title=f"Minimal ratio depends on the zero tolerance ({len(results['runs'])} runs)",
    )
    ax.legend(fontsize=8)
    return fig


def figures(results: dict) -> dict:
    return {
        "ratio-vs-loss": _ratio_vs_loss(results),
        "spectra": _spectra(results),
        "ratio-vs-tolerance": _ratio_vs_tolerance(results),
    }


def _range(values: np.ndarray) -> list[float]:
    """[min, median, max] of the finite values, or [] when there are none."""
    v = values[np.isfinite(values)]
    return [float(v.min()), float(np.median(v)), float(v.max())] if v.size else []


def _fmt_range(rng: list[float]) -> str:
    return f"{rng[0]:.2f}-{rng[2]:.2f} (median {rng[1]:.2f})" if rng else "none"


def notes(results: dict) -> Notes:
    setup, runs, groups = results["setup"], results["runs"], loss_groups(results)
    n, params, pts, loss = len(runs), setup["params"], setup["n_points"], _col(results, "loss")
    log_loss = np.log10(np.where(loss > 0, loss, np.nan))  # (K,) runs at loss 0 are left out
    g1 = float(np.nanmedian(_col(results, "grad_norm_after_loss_phase")))
    g2 = float(np.nanmedian(_col(results, "grad_norm")))
    reached = np.array([r["loss"] for r in runs if r["reached_threshold"]], dtype=float)
    summary = {
        "runs": n,
        "parameters per model": params,
        f"runs reaching grad norm < {setup['grad_norm_threshold']:g}": len(reached),
        "median grad norm after loss phase / after grad-norm phase": [g1, g2],
        "final loss min / median / max": _range(loss),
    }
    change = f"{g1 / g2:.1f}x lower" if g2 < g1 else f"{g2 / g1:.1f}x higher"
    at = f", at losses from {sci(reached.min())} to {sci(reached.max())}" if len(reached) else ""
    lines = [
        f"Minimizing the squared gradient norm changed the median gradient norm from "
        f"{sci(g1)} to {sci(g2)} ({change}) over {n} runs; {len(reached)} of {n} runs "
        f"reached |grad| < {setup['grad_norm_threshold']:g}{at}."
    ]
    for key, name in RATIOS:
        ratio = _col(results, key)
        (r, m), (rho, _) = pearson(log_loss, ratio), spearman(log_loss, ratio)
        summary[f"minimal ratio ({name}) min / median / max"] = _range(ratio)
        summary[f"minimal ratio ({name}) vs log loss: Pearson r / Spearman rho"] = [r, rho]
        ranges = {label: (int(mask.sum()), _range(ratio[mask])) for label, mask in groups.items()}
        for label, (size, rng) in ranges.items():
            summary[f"minimal ratio ({name}), {label}: n / min / median / max"] = [size, *rng]
        trend = (
            f"no correlation with log10 loss is defined over {m} runs"
            if math.isnan(r)
            else f"its correlation with log10 loss is r = {r:.2f} (Spearman {rho:.2f}) over {m} runs"
        )
        parts = "; ".join(
            f"{k}: {_fmt_range(rng)}, n = {size}" for k, (size, rng) in ranges.items()
        )
        lines.append(f"Minimal ratio by {name}: {trend}; {parts}.")
    at_tol = [float(np.median(ratios_at(results, t))) for t in (0.0, setup["eig_rel_tol"], 1e-6)]
    summary["median minimal ratio at tol 0 / used / rel. 1e-6"] = at_tol
    ratio = _col(results, "minimal_ratio")
    low, high = (_fmt_range(_range(ratio[mask])) for mask in groups.values())
    top, zero = float(np.nanmax(ratio)), np.nanmedian(_col(results, "zero_ratio"))
    sampled = np.nanmedian(_col(results, "sampled_ratio"))
    # radius below which the gradient term |g| r outweighs the mean curvature r² trace(H)/(2P)
    grad_norm, trace = _col(results, "grad_norm"), np.abs(_col(results, "hessian_trace"))
    crossover = np.nanmedian(2 * grad_norm * math.sqrt(params) / trace)
    lines += [
        f"Beside the homework's example (loss < {LOW_LOSS:g}: about {HOMEWORK_LOW[0]:g}-"
        f"{HOMEWORK_LOW[1]:g}; loss ~0.09: {HOMEWORK_HIGH[0]:g}-{HOMEWORK_HIGH[1]:g}), the "
        f"eigenvalue ratios here are {low} for loss < {LOW_LOSS:g} and {high} for "
        f"loss >= {LOW_LOSS:g}.",
        f"The largest minimal ratio is {top:.2f} ({round(top * params)} of {params} "
        f"eigenvalues above the tolerance). Near zero loss the MSE Hessian is its "
        f"Gauss-Newton part, of rank <= {pts} training points, so at most "
        f"{pts}/{params} = {pts / params:.2f} of its eigenvalues can be clearly positive there.",
        f"The eigenvalue ratio depends on the zero tolerance: its median over {n} runs is "
        f"{at_tol[0]:.2f} by sign alone, {at_tol[1]:.2f} with the tolerance used "
        f"({setup['eig_rel_tol']:g} x max|λ|; a median {100 * zero:.0f}% of eigenvalues count "
        f"as zero) and {at_tol[2]:.2f} at 1e-06 x max|λ|.",
        f"By sampling at radius {setup['radius']:g} the median ratio is {sampled:.2f}, by "
        f"eigenvalues {np.nanmedian(ratio):.2f}. A random unit direction u sees the "
        f"curvature u'Hu ~ trace(H)/P, and the gradient term outweighs it below a radius of "
        f"about 2|g|√P/|trace(H)| (median {sci(crossover)} over {n} runs)"
        + (
            "; the few large positive eigenvalues dominate the trace, so most directions curve up."
            if sampled > np.nanmedian(ratio)
            else "."
        ),
    ]
    (lo, hi), widths = setup["domain"], "-".join(map(str, setup["widths"]))
    model = {
        "model": f"MLP {widths}, {setup['activation']}",
        "parameters": params,
        "data": f"{setup['formula']} on [{lo:g}, {hi:.4g}], {pts} evenly spaced points, MSE",
    }
    return Notes(summary, lines, [("Model and data", [model])])


EXPERIMENT = Experiment(
    id="minimal-ratio",
    item="HW1-2",
    part="hw1-2",
    rank=3,
    title="When the gradient is almost zero: minimal ratio against loss",
    question="At points where the gradient is almost zero, are we at a minimum or a saddle? "
    "How does the minimal ratio (share of positive Hessian eigenvalues) relate to the loss?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "ratio-vs-loss": "minimal ratio against the final training loss, one point per run; "
        "left: fraction of Hessian eigenvalues above the tolerance, right: fraction of random "
        "nearby parameter vectors with higher loss; colour = final gradient norm; crosses = "
        "runs whose gradient norm stayed above the threshold",
        "spectra": "sorted exact Hessian eigenvalues (symlog) of the lowest-, median- and "
        "highest-loss runs; the grey band is counted as zero",
        "ratio-vs-tolerance": "the eigenvalue minimal ratio recomputed from the saved spectra "
        "for a range of zero tolerances (relative to each run's largest |eigenvalue|)",
    },
    quick_minutes=0.3,
    full_differs="same scale as the homework (100 runs of 1-10-10-1); quick allows 1500 "
    "instead of 10 000 epochs for the gradient-norm phase and samples 1000 instead of 5000 "
    "neighbours per run.",
)

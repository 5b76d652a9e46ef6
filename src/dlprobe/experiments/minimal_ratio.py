"""HW1-2 what happens when the gradient is almost zero: the minimal ratio against the loss.

Protocol: train many seeds of one small network (the homework's 1-10-10-1, 141 parameters,
a non-linear activation) on a sine, as one population. Phase 1 minimizes the loss; phase 2
changes the objective to the squared gradient norm and runs until each model's norm is
below a threshold (the model is then frozen) or an epoch limit. At every final point,
measure the loss and gradient norm (float64), the exact Hessian spectrum (float64), and the
minimal ratio by both definitions: the fraction of eigenvalues above a tolerance, and the
fraction of random nearby parameter vectors whose loss is higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from scipy import stats

from dlprobe.data import FUNCTIONS, function_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import check_common, model_seeds, parse_widths, require, sci
from dlprobe.experiments.plotting import COLORS, new_figure
from dlprobe.measure.gradient import population_gradient_norm, population_loss
from dlprobe.measure.hessian import population_hessian_eigenvalues
from dlprobe.measure.minimal_ratio import minimal_ratio, minimal_ratio_by_sampling
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import Population, TrainConfig

# The homework's example (SPEC): runs with loss < 0.01 had minimal ratios of about
# 0.3-0.55, runs at loss ~ 0.09 had 0-0.23.
LOW_LOSS = 0.01
HOMEWORK_LOW, HOMEWORK_HIGH = (0.3, 0.55), (0.0, 0.23)
# Relative tolerances of the tolerance-sensitivity figure (0 is drawn separately).
REL_TOLS = tuple(10.0**e for e in range(-14, -1))


@dataclass(frozen=True)
class Config:
    model: str = "1-10-10-1"  # layer widths; the homework's 141-parameter network
    # hidden activation, non-linear (a linear net is the pitfall); with sigmoid more runs end
    # at higher-loss critical points than with tanh, which spreads the loss axis
    activation: str = "sigmoid"
    function: str = "sine"  # target function (dlprobe datasets); sine = sin(x) on [0, 2π]
    n_points: int = 64  # training points, evenly spaced on the function's domain
    seeds: int = 100  # training runs, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer of both phases
    lr: float = 1e-2  # learning rate of phase 1 (loss)
    epochs: int = 1000  # phase 1: full-batch epochs minimizing the loss
    grad_lr: float = 1e-3  # learning rate of phase 2 (squared gradient norm)
    grad_epochs: int = 1500  # phase 2: epoch limit when minimizing the squared gradient norm
    grad_norm_threshold: float = 1e-3  # phase 2 stops a model once its gradient norm is below
    check_every_epochs: int = 10  # phase 2: epochs between gradient-norm checks
    eig_rel_tol: float = 1e-9  # |eigenvalue| <= eig_rel_tol * max|eigenvalue| counts as zero
    n_samples: int = 1000  # sampling definition: random parameter vectors per run
    radius: float = 1e-2  # sampling definition: distance of each sample (parameter-space 2-norm)

    def validate(self) -> None:
        check_common(self)
        widths = parse_widths(self.model)
        require(
            widths[0] == 1 and widths[-1] == 1,
            f"model must have 1 input and 1 output (a 1-D function), got {self.model!r}",
        )
        require(
            self.function in FUNCTIONS,
            f"unknown function {self.function!r}; valid names: {', '.join(FUNCTIONS)}",
        )
        require(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        for name in ("grad_lr", "grad_epochs", "grad_norm_threshold", "check_every_epochs"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(self.eig_rel_tol >= 0, f"eig_rel_tol must be >= 0, got {self.eig_rel_tol}")
        require(self.n_samples >= 1, f"n_samples must be >= 1, got {self.n_samples}")
        require(
            self.radius > 0 and math.isfinite(self.radius),
            f"radius must be > 0, got {self.radius}",
        )


PROFILES = {
    "smoke": Config(
        model="1-4-4-1",
        n_points=16,
        seeds=6,
        epochs=40,
        grad_epochs=40,
        check_every_epochs=5,
        n_samples=64,
    ),
    "quick": Config(),
    "full": Config(grad_epochs=10000, n_samples=5000),
}


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    widths = parse_widths(cfg.model)
    n_params = mlp_param_count(widths, cfg.activation)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    data = function_dataset(cfg.function, cfg.n_points).to(run_dir.device)
    x, y = data.x_train, data.y_train
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)

    def loss_and_grad_norm() -> tuple[list[float], list[float]]:
        # float64 at the population's current parameters, like the Hessian below
        params = {n: p.detach().double() for n, p in pop.params.items()}
        loss = population_loss(pop.base, params, F.mse_loss, x.double(), y.double())
        g = population_gradient_norm(pop.base, params, F.mse_loss, x.double(), y.double())
        return loss.cpu().tolist(), g.cpu().tolist()

    run_dir.train(
        "loss-phase",
        pop,
        data,
        TrainConfig(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            epochs=cfg.epochs,
            batch_size=0,
            eval_every_epochs=cfg.epochs,
        ),
    )
    loss_1, grad_norm_1 = loss_and_grad_norm()
    hist = run_dir.train(
        "grad-norm-phase",
        pop,
        data,
        TrainConfig(
            optimizer=cfg.optimizer,
            lr=cfg.grad_lr,
            epochs=cfg.grad_epochs,
            batch_size=0,
            objective="grad_norm_sq",
            stop_below_grad_norm=cfg.grad_norm_threshold,
            eval_every_epochs=cfg.check_every_epochs,
        ),
    )
    loss_2, grad_norm_2 = loss_and_grad_norm()

    def probes(_ckpt) -> dict:
        run_dir.log(f"exact Hessians ({n_params}x{n_params}, float64) of {len(seeds)} runs")
        eigs = population_hessian_eigenvalues(pop.base, pop.params, F.mse_loss, x, y)  # (K, P)
        run_dir.log(f"sampling {cfg.n_samples} neighbours at radius {cfg.radius:g} per run")
        sampled = [
            minimal_ratio_by_sampling(
                pop.model(k), F.mse_loss, x, y, cfg.n_samples, cfg.radius, seed=seed
            )
            for k, seed in enumerate(seeds)
        ]
        return {"eigenvalues": eigs.cpu(), "sampled": sampled}

    measured = run_dir.stage("probes", probes)
    eigs = measured["eigenvalues"]  # (K, P) float64, ascending
    ratios = minimal_ratio(eigs, rel_tol=cfg.eig_rel_tol)
    flat = pop.flat_params().cpu()  # (K, P)
    runs = []
    for k, seed in enumerate(seeds):
        lam, mr, s = eigs[k], ratios[k], measured["sampled"][k]
        runs.append(
            {
                "run": k,
                "seed": seed,
                "loss_after_loss_phase": loss_1[k],
                "grad_norm_after_loss_phase": grad_norm_1[k],
                "loss": loss_2[k],
                "grad_norm": grad_norm_2[k],
                "reached_threshold": grad_norm_2[k] < cfg.grad_norm_threshold,
                "stopped_at_epoch": hist.stopped_at_epoch[k],
                "diverged": k in hist.diverged,
                "minimal_ratio": mr.positive,
                "negative_ratio": mr.negative,
                "zero_ratio": mr.zero,
                "eig_tol": mr.tol,
                "max_eigenvalue": float(lam[-1]),
                "min_eigenvalue": float(lam[0]),
                "hessian_trace": float(lam.sum()),
                "sampled_ratio": s.higher,
                "sampled_lower": s.lower,
                "sampled_ties": s.ties,
                "sampled_stderr": s.stderr,
            }
        )
    return {
        "setup": [
            {
                "widths": widths,
                "activation": cfg.activation,
                "params": n_params,
                "function": cfg.function,
                "formula": FUNCTIONS[cfg.function].formula,
                "domain": list(FUNCTIONS[cfg.function].domain),
                "n_points": cfg.n_points,
                "grad_norm_threshold": cfg.grad_norm_threshold,
                "eig_rel_tol": cfg.eig_rel_tol,
                "n_samples": cfg.n_samples,
                "radius": cfg.radius,
            }
        ],
        "runs": runs,
        "spectra": [
            {"run": k, "seed": seed, "eigenvalues": eigs[k].tolist()}
            for k, seed in enumerate(seeds)
        ],
        "final_params": [
            {"run": k, "seed": seed, "params": flat[k].tolist()} for k, seed in enumerate(seeds)
        ],
        "seeds": seeds,
    }


# -- analysis from results alone -------------------------------------------------------------


def _column(results: dict, key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in results["runs"]], dtype=float)


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


def _groups(results: dict) -> dict[str, np.ndarray]:
    loss = _column(results, "loss")
    return {f"loss < {LOW_LOSS:g}": loss < LOW_LOSS, f"loss >= {LOW_LOSS:g}": loss >= LOW_LOSS}


def _ratios_at(results: dict, rel_tol: float) -> np.ndarray:
    eigs = np.array([s["eigenvalues"] for s in results["spectra"]], dtype=float)  # (K, P)
    return np.array([m.positive for m in minimal_ratio(eigs, rel_tol=rel_tol)])


def _fmt_range(rng: tuple[float, float, float] | None) -> str:
    return "none" if rng is None else f"{rng[0]:.2f}-{rng[2]:.2f} (median {rng[1]:.2f})"


def _symlog_ticks(tol: float, low: float, high: float) -> list[float]:
    """0 and every other power of ten from the tolerance out to the data, on both sides."""
    first = math.ceil(math.log10(max(tol, 1e-300)))
    ticks = [0.0]
    for sign, end in ((1, high), (-1, low)):
        if sign * end > tol:
            top = math.ceil(math.log10(sign * end))
            ticks += [sign * 10.0**d for d in range(first, top + 1, 2)]
    return sorted(ticks)


# -- figures -----------------------------------------------------------------------------------


def figures(results: dict) -> dict:
    setup = results["setup"][0]
    n = len(results["runs"])
    loss = _column(results, "loss")
    grad_norm = _column(results, "grad_norm")
    reached = np.array([r["reached_threshold"] for r in results["runs"]], dtype=bool)
    figs = {}

    fig, axes = new_figure(ncols=2, width=5.6, height=4.6, sharey=True, layout="constrained")
    positive = grad_norm[np.isfinite(grad_norm) & (grad_norm > 0)]
    norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.01))
    panels = [
        ("minimal_ratio", f"eigenvalues: fraction > tol (rel. tol {setup['eig_rel_tol']:g})"),
        (
            "sampled_ratio",
            f"sampling: fraction of {setup['n_samples']} neighbours\n"
            f"at radius {setup['radius']:g} with higher loss",
        ),
    ]
    bound = setup["n_points"] / setup["params"]
    for ax, (key, title) in zip(axes, panels, strict=True):
        ratio = _column(results, key)
        sc = ax.scatter(
            loss[reached],
            ratio[reached],
            c=grad_norm[reached],
            norm=norm,
            cmap="viridis",
            s=28,
            edgecolors="black",
            linewidths=0.3,
        )
        ax.scatter(
            loss[~reached], ratio[~reached], c=grad_norm[~reached], norm=norm, cmap="viridis",
            marker="x", s=30, linewidths=1.2,
        )  # fmt: skip
        if key == "minimal_ratio":
            ax.axhline(bound, color="grey", ls=":", lw=1)
        ax.axvline(LOW_LOSS, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set(xlabel="final training loss (MSE)", title=title)
    axes[0].set_ylabel("minimal ratio")
    thr = setup["grad_norm_threshold"]
    handles = [
        Line2D([], [], marker="o", ls="", mfc="0.6", mec="black", mew=0.3,
               label=f"|grad| < {thr:g} reached (n={int(reached.sum())})"),
        Line2D([], [], marker="x", ls="", color="0.4", mew=1.2,
               label=f"not reached (n={int((~reached).sum())})"),
        Line2D([], [], color="grey", ls=":", label=f"points / params = {bound:.2f}"),
        Line2D([], [], color="grey", ls="--", lw=0.8, label=f"loss = {LOW_LOSS:g}"),
    ]  # fmt: skip
    axes[0].legend(handles=handles, fontsize=8, loc="upper left")
    fig.colorbar(sc, ax=list(axes), label="final gradient norm (log)", shrink=0.9)
    fig.suptitle(
        f"Minimal ratio against loss: {n} runs of MLP {'-'.join(map(str, setup['widths']))} "
        f"({setup['activation']}, {setup['params']} params) on {setup['formula']}",
        fontsize=10,
    )
    figs["ratio-vs-loss"] = fig

    fig, ax = new_figure(width=6.5, height=4.4)
    order = np.argsort(np.where(np.isfinite(loss), loss, np.inf))
    finite = order[np.isfinite(loss[order])]
    picks = {"lowest loss": finite[0], "median loss": finite[len(finite) // 2]}
    picks["highest loss"] = finite[-1]
    tols, extremes = [], []
    for i, (label, k) in enumerate(picks.items()):
        r = results["runs"][k]
        lam = np.sort(np.array(results["spectra"][k]["eigenvalues"], dtype=float))
        tols.append(r["eig_tol"])
        extremes += [lam[0], lam[-1]]
        ax.plot(
            np.arange(1, lam.size + 1), lam, marker="o", ms=2.5, lw=0.8, color=COLORS[i],
            label=f"{label}: run {k}, loss {sci(r['loss'])}, ratio {r['minimal_ratio']:.2f}",
        )  # fmt: skip
    tol = max(tols)
    ax.axhspan(-tol, tol, color="grey", alpha=0.25, lw=0, label=f"|λ| <= tol (<= {tol:.1e})")
    ax.set_yscale("symlog", linthresh=max(tol, 1e-300), linscale=1.0)
    ax.set_yticks(_symlog_ticks(tol, min(extremes), max(extremes)))
    ax.minorticks_off()
    ax.set(
        xlabel="eigenvalue index (ascending)",
        ylabel="Hessian eigenvalue (symlog)",
        title=f"Exact Hessian spectra (float64) of 3 of {n} runs",
    )
    ax.legend(fontsize=7.5, loc="upper left")
    figs["spectra"] = fig

    fig, ax = new_figure(width=6.5, height=4.2)
    for i, (label, mask) in enumerate(_groups(results).items()):
        if not mask.any():
            continue
        curves = np.array([_ratios_at(results, t)[mask] for t in REL_TOLS])  # (T, n_group)
        ax.plot(REL_TOLS, np.median(curves, 1), color=COLORS[i],
                label=f"{label}: median, band min-max (n={int(mask.sum())})")  # fmt: skip
        ax.fill_between(REL_TOLS, curves.min(1), curves.max(1), color=COLORS[i], alpha=0.2, lw=0)
        at_zero = _ratios_at(results, 0.0)[mask]
        ax.errorbar(
            [REL_TOLS[0] / 10], [np.median(at_zero)],
            yerr=[[np.median(at_zero) - at_zero.min()], [at_zero.max() - np.median(at_zero)]],
            color=COLORS[i], marker="s", capsize=3,
        )  # fmt: skip
    ax.axvline(setup["eig_rel_tol"], color="black", ls="--", lw=0.8, label="tolerance used")
    ax.set_xscale("log")
    ax.set(
        xlabel="tolerance relative to max|λ| (square at left: tol = 0, sign only)",
        ylabel="minimal ratio (fraction > tol)",
        title=f"Minimal ratio depends on the zero tolerance ({n} runs)",
    )
    ax.legend(fontsize=8)
    figs["ratio-vs-tolerance"] = fig
    return figs


# -- summary, observations, settings -------------------------------------------------------


def summarize(results: dict) -> dict:
    setup = results["setup"][0]
    loss = _column(results, "loss")
    out = {
        "runs": len(results["runs"]),
        "parameters per model": setup["params"],
        f"runs reaching grad norm < {setup['grad_norm_threshold']:g}": sum(
            r["reached_threshold"] for r in results["runs"]
        ),
        "median grad norm after loss phase / after grad-norm phase": [
            float(np.nanmedian(_column(results, "grad_norm_after_loss_phase"))),
            float(np.nanmedian(_column(results, "grad_norm"))),
        ],
        "final loss min / median / max": list(_range(loss) or []),
    }
    for key, name in (("minimal_ratio", "eigenvalues"), ("sampled_ratio", "sampling")):
        ratio = _column(results, key)
        r, rho, n = _correlations(loss, ratio)
        out[f"minimal ratio ({name}) min / median / max"] = list(_range(ratio) or [])
        out[f"minimal ratio ({name}) vs log loss: Pearson r / Spearman rho"] = [r, rho]
        for label, mask in _groups(results).items():
            out[f"minimal ratio ({name}), {label}: n / min / median / max"] = [
                int(mask.sum()),
                *(_range(ratio[mask]) or []),
            ]
    out["median minimal ratio at tol 0 / used / rel. 1e-6"] = [
        float(np.median(_ratios_at(results, t))) for t in (0.0, setup["eig_rel_tol"], 1e-6)
    ]
    return out


def observations(results: dict) -> list[str]:
    setup = results["setup"][0]
    n, params = len(results["runs"]), setup["params"]
    loss = _column(results, "loss")
    lines = []
    g1 = np.nanmedian(_column(results, "grad_norm_after_loss_phase"))
    g2 = np.nanmedian(_column(results, "grad_norm"))
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
    groups = _groups(results)
    for key, name in (("minimal_ratio", "eigenvalues"), ("sampled_ratio", "sampling")):
        ratio = _column(results, key)
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
    ratio = _column(results, "minimal_ratio")
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
    at = [float(np.median(_ratios_at(results, t))) for t in (0.0, setup["eig_rel_tol"], 1e-6)]
    zero = np.nanmedian(_column(results, "zero_ratio"))
    lines.append(
        f"The eigenvalue ratio depends on the zero tolerance: its median over {n} runs is "
        f"{at[0]:.2f} by sign alone, {at[1]:.2f} with the tolerance used "
        f"({setup['eig_rel_tol']:g} x max|λ|; a median {100 * zero:.0f}% of eigenvalues count "
        f"as zero) and {at[2]:.2f} at 1e-06 x max|λ|."
    )
    sampled = np.nanmedian(_column(results, "sampled_ratio"))
    crossover = np.nanmedian(
        2
        * _column(results, "grad_norm")
        * math.sqrt(params)
        / np.abs(_column(results, "hessian_trace"))
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


EXPERIMENT = Experiment(
    id="minimal-ratio",
    homework="HW1-2",
    title="When the gradient is almost zero: minimal ratio against loss",
    question="At points where the gradient is almost zero, are we at a minimum or a saddle? "
    "How does the minimal ratio (share of positive Hessian eigenvalues) relate to the loss?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
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

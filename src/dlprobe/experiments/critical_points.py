"""Lecture L3 (critical points): "local minima are rare" - which critical points training
reaches, and where gradient descent stops.

Protocol: for each model, a population of seeds is trained by plain full-batch gradient
descent (phase 1), then on the squared gradient norm until the norm is below a threshold
(phase 2, as for minimal-ratio). After each phase every run's float64 gradient norm is
measured. A run is at a critical point when that norm is below the threshold (the criterion);
its exact float64 Hessian spectrum then says which kind: a minimum when no eigenvalue is below
-tol, a saddle otherwise (tol = eig_rel_tol · max|λ|). Statistics are over critical points
only; the others are counted and named. Reported: the kinds per model and phase, the index
(share of negative eigenvalues) against the loss, and how the share of minima depends on tol.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated

import numpy as np
import torch.nn.functional as F

from dlprobe.config import Bound, Fraction, PosFloat, PosInt, Seed, require
from dlprobe.data import Dataset
from dlprobe.experiments.kit import Activation, FunctionName, RunContext
from dlprobe.experiments.kit.critical import GRAD_NORM_PHASE
from dlprobe.experiments.kit.experiment import Experiment, Notes, fidelity_row
from dlprobe.experiments.kit.plotting import COLORS, new_figure, no_data
from dlprobe.experiments.kit.stats import diverged_lines, group_rows, sci
from dlprobe.experiments.kit.sweep import check_batch_sizes, mlp_population, parse_widths
from dlprobe.measure.gradient import population_gradient_norm, population_loss
from dlprobe.measure.hessian import population_hessian_eigenvalues
from dlprobe.models import mlp_param_count
from dlprobe.train import Population, TrainConfig

PHASES = ("gradient descent", "gradient-norm phase")  # where the points are taken
KINDS = ("minimum", "saddle", "not critical", "diverged")
REL_TOLS = (0.0, *(10.0**e for e in range(-12, -1)))  # tolerances of the tolerance figure


@dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = ("1-5-5-1", "1-10-10-1")  # layer widths, one population each
    activation: Activation = "sigmoid"  # hidden activation (non-linear)
    function: FunctionName = "sine"  # target function; sine = sin(x) on [0, 2π]
    n_points: Annotated[int, Bound(ge=2)] = 64  # training points, evenly spaced on the domain
    seeds: PosInt = 40  # runs per model
    seed: Seed = 0  # base seed: run i uses seed + i
    # phase 1: plain full-batch gradient descent, as in the lecture
    train: TrainConfig = TrainConfig(
        optimizer="sgd", lr=0.5, epochs=1000, batch_size=0, eval_every_epochs=1000
    )
    # phase 2: the squared gradient norm; critical.stop_below_grad_norm is the criterion of a
    # critical point after either phase
    critical: TrainConfig = GRAD_NORM_PHASE
    eig_rel_tol: PosFloat = 1e-6  # λ < -eig_rel_tol · max|λ| counts as a negative eigenvalue
    rare_share: Fraction = 0.1  # "rare": minima are fewer than this share of critical points
    min_critical: PosInt = 10  # critical points needed (after phase 2) to judge "rare" at all

    def check(self) -> None:
        for model in self.models:
            widths = parse_widths(model)
            require(widths[0] == 1 and widths[-1] == 1, f"{model} must map 1 input to 1 output")
        require(len(set(self.models)) == len(self.models) >= 1, "models must be distinct")
        require(self.critical.stop_below_grad_norm > 0, "critical.stop_below_grad_norm must "
                "be > 0: it is the criterion of a critical point")  # fmt: skip
        check_batch_sizes([self.train.batch_size, self.critical.batch_size], self.n_points)


PROFILES = {
    "smoke": {"models": ("1-3-1", "1-4-4-1"), "n_points": 16, "seeds": 6, "train.epochs": 40,
              "critical.epochs": 40, "critical.eval_every_epochs": 5,
              "critical.stop_below_grad_norm": 0.2},
    "full": {"seeds": 100, "train.epochs": 5000, "critical.epochs": 10000},
}  # fmt: skip


def _points(cfg: Config, model: str, phase: str, pop: Population, data: Dataset, died: dict,
            _checkpoint=None) -> dict:  # fmt: skip
    """Every run's float64 loss and gradient norm; the Hessian spectrum of the critical ones
    (a ``ctx.stage``). ``died``: run -> (epoch, reason) of the runs diverged by now."""
    x, y = data.x_train.double(), data.y_train.double()
    params = {n: p.detach().double() for n, p in pop.params.items()}
    loss = population_loss(pop.base, params, F.mse_loss, x, y).tolist()  # (K,)
    grad = population_gradient_norm(pop.base, params, F.mse_loss, x, y).tolist()  # (K,)
    bad = set(died)
    crit = [
        k for k in range(pop.size) if k not in bad and grad[k] < cfg.critical.stop_below_grad_norm
    ]
    lam = []
    if crit:
        sub = {n: p[crit] for n, p in params.items()}
        lam = population_hessian_eigenvalues(pop.base, sub, F.mse_loss, x, y).tolist()  # (C, P)
    spectra = dict(zip(crit, lam, strict=True))
    rows = []
    for k, seed in enumerate(pop.seeds):
        row = {"model": model, "phase": phase, "seed": seed, "loss": loss[k], "grad_norm": grad[k],
               "diverged": k in bad, "diverged_at_epoch": died.get(k, (None, None))[0],
               "diverged_reason": died.get(k, (None, None))[1], "spectrum": spectra.get(k)}  # fmt: skip
        rows.append({**row, **classify(row["spectrum"], cfg.eig_rel_tol, row["diverged"])})
    return {"rows": rows}


def classify(spectrum: list[float] | None, rel_tol: float, diverged: bool = False) -> dict:
    """Kind and index of a point from its Hessian spectrum (None: not critical)."""
    if diverged or spectrum is None:
        return {"kind": "diverged" if diverged else "not critical", "index": None}
    lam = np.asarray(spectrum)
    negative = int((lam < -rel_tol * np.abs(lam).max()).sum())
    return {"kind": "saddle" if negative else "minimum", "index": negative / lam.size,
            "lambda_min": float(lam.min()), "negative": negative}  # fmt: skip


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.function(cfg.function, cfg.n_points)
    points, models = [], []
    for model in cfg.models:
        widths = parse_widths(model)
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
        models.append({"model": model, "params": mlp_param_count(widths, cfg.activation)})
        died: dict[int, tuple] = {}  # a run that diverged in phase 1 stays out of phase 2
        for phase, train in zip(PHASES, (cfg.train, cfg.critical), strict=True):
            key = f"{model}-{phase.split()[0]}"
            hist = ctx.train(key, pop, data, train)
            died |= {k: (hist.diverged_at_epoch[k], hist.diverged_reason[k])
                     for k in hist.diverged if k not in died}  # fmt: skip
            stage = partial(_points, cfg, model, phase, pop, data, died)
            points += ctx.stage(f"{key}-points", stage)["rows"]
    return {
        "setup": {
            "models": models,
            "activation": cfg.activation,
            "function": cfg.function,
            "n_points": cfg.n_points,
            "seeds": cfg.seeds,
            "eig_rel_tol": cfg.eig_rel_tol,
            "threshold": cfg.critical.stop_below_grad_norm,
            "rare_share": cfg.rare_share,
            "min_critical": cfg.min_critical,
            "gd": {k: getattr(cfg.train, k) for k in ("optimizer", "lr", "epochs")},
        },  # fmt: skip
        "points": points,
    }


def _kinds_figure(results: dict):
    fig, ax = new_figure(width=7.0, height=4.2)
    groups = group_rows(results["points"], "model", "phase")
    x, bottom = np.arange(len(groups)), np.zeros(len(groups))
    for i, kind in enumerate(KINDS):
        height = np.array([sum(r["kind"] == kind for r in rs) for rs in groups.values()])
        ax.bar(x, height, bottom=bottom, color=COLORS[i], label=kind, width=0.6)
        bottom += height
    ax.set_xticks(x, [f"{m}\nafter {p}" for m, p in groups], fontsize=8)
    ax.set(ylabel="runs", ylim=(0, bottom.max() * 1.15),
           title=f"What each run reached (critical: gradient norm < {results['setup']['threshold']:g})")  # fmt: skip
    ax.legend(fontsize=8, ncols=4, loc="upper left")
    return fig


def _index_figure(results: dict):
    fig, ax = new_figure(width=6.4, height=4.2)
    crit = [r for r in results["points"] if r["index"] is not None]
    for i, ((model, phase), rs) in enumerate(group_rows(crit, "model", "phase").items()):
        ax.scatter([r["loss"] for r in rs], [r["index"] for r in rs], color=COLORS[i % 10],
                   marker="os"[PHASES.index(phase)], s=22, label=f"{model}, {phase} (n={len(rs)})")  # fmt: skip
    if crit:
        ax.set_xscale("log")
        ax.legend(fontsize=7.5)
    else:
        no_data(ax, "no run met the gradient-norm criterion")
    ax.set(xlabel="training loss (MSE)", ylabel="share of negative eigenvalues (index)",
           title="Index of every critical point (0 = a minimum)")  # fmt: skip
    return fig


def minima_share(rows: list[dict], rel_tol: float) -> float:
    """Share of the critical points among ``rows`` that are minima at this tolerance."""
    kinds = [classify(r["spectrum"], rel_tol)["kind"] for r in rows if r["spectrum"] is not None]
    return float(np.mean([k == "minimum" for k in kinds])) if kinds else float("nan")


def _tolerance_figure(results: dict):
    fig, ax = new_figure(width=6.4, height=4.2)
    crit = [r for r in results["points"] if r["spectrum"] is not None]
    for i, ((model,), rs) in enumerate(group_rows(crit, "model").items()):
        shares = [minima_share(rs, t) for t in REL_TOLS[1:]]
        ax.plot(REL_TOLS[1:], shares, marker=".", color=COLORS[i], label=f"{model} (n={len(rs)})")
        ax.scatter([REL_TOLS[1] / 10], [minima_share(rs, 0.0)], color=COLORS[i], marker="s")
    if crit:
        ax.axvline(results["setup"]["eig_rel_tol"], color="black", ls="--", lw=0.8)
        ax.legend(fontsize=8)
    else:
        no_data(ax, "no run met the gradient-norm criterion")
    ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="tolerance / max|λ| (square: sign only; dashed: used)",
           ylabel="share of critical points that are minima",
           title="Minima among the critical points, by the zero tolerance")  # fmt: skip
    return fig


def figures(results: dict) -> dict:
    return {
        "kinds": _kinds_figure(results),
        "index-vs-loss": _index_figure(results),
        "tolerance": _tolerance_figure(results),
    }


def notes(results: dict) -> Notes:
    setup, points, summary, lines = results["setup"], results["points"], {}, []
    params = {m["model"]: m["params"] for m in setup["models"]}
    gd = setup["gd"]
    lines.append(
        f"Critical: float64 gradient norm < {setup['threshold']:g}; a minimum when no Hessian "
        f"eigenvalue is below -{setup['eig_rel_tol']:g}·max|λ|. Phase 1: {gd['epochs']} steps "
        f"of full-batch {gd['optimizer']} at lr {gd['lr']:g}; phase 2 minimizes the squared "
        f"gradient norm from there. {setup['seeds']} seeds per model."
    )
    crit_all, minima_all, stuck = 0, 0, {"saddle": 0, "minimum": 0, "not critical": 0}
    for (model, phase), rs in group_rows(points, "model", "phase").items():
        c = {k: sum(r["kind"] == k for r in rs) for k in KINDS}
        idx = [r["index"] for r in rs if r["index"] is not None]
        summary[f"{model}, after {phase}: minima / saddles / not critical"] = [
            c["minimum"],
            c["saddle"],
            c["not critical"],
        ]
        far = [r for r in rs if r["kind"] == "not critical"]
        lines.append(
            f"{model} ({params[model]} params), after {phase}: {c['minimum']} minima, "
            f"{c['saddle']} saddles, {c['not critical']} not critical"
            + (f" (gradient norms {sci(min(r['grad_norm'] for r in far))}-{sci(max(r['grad_norm'] for r in far))})" if far else "")
            + (f"; median index {np.median(idx):.3f} (range {min(idx):.3f}-{max(idx):.3f}, n = {len(idx)})" if idx else "")
            + "."
        )  # fmt: skip
        if phase == PHASES[1]:
            crit_all, minima_all = crit_all + c["minimum"] + c["saddle"], minima_all + c["minimum"]
        else:
            stuck = {k: stuck[k] + c[k] for k in stuck}
    share = minima_all / crit_all if crit_all else float("nan")
    rare, enough = setup["rare_share"], crit_all >= setup["min_critical"]
    few = f"only {crit_all} critical points, fewer than the {setup['min_critical']} needed to judge"
    rows = [fidelity_row(
        "local minima are rare: most critical points have a negative eigenvalue",
        "lecture L3: in experiments the minimum ratio is hardly ever 1; critical points are mostly saddles",
        f"{minima_all} minima among {crit_all} critical points after phase 2",
        enough and share < rare,
        f"minima were {100 * share:.0f}% (rare: under {100 * rare:.0f}%)" if enough else few,
    ), fidelity_row(
        "where gradient descent stops, it is at a saddle rather than a minimum",
        "lecture L3: training stuck at a critical point is mostly at a saddle",
        f"GD endpoints: {stuck['saddle']} saddles, {stuck['minimum']} minima, {stuck['not critical']} not critical",
        stuck["saddle"] > stuck["minimum"],
        "GD stopped at no critical point: its endpoints still had gradient norms above the "
        "threshold (training stuck is not a small gradient, lecture L6)" if stuck["saddle"] + stuck["minimum"] == 0
        else f"GD stopped at {stuck['minimum']} minima and {stuck['saddle']} saddles",
    )]  # fmt: skip
    for t in (0.0, setup["eig_rel_tol"], 1e-3):
        summary[f"share of minima after phase 2 at tol {t:g}·max|λ|"] = minima_share(
            [r for r in points if r["phase"] == PHASES[1]], t)  # fmt: skip
    lines += diverged_lines(points, "are left out", keys=("model", "phase"))
    return Notes(summary, lines, fidelity=rows)


EXPERIMENT = Experiment(
    id="critical-points",
    item="Lecture L3",
    part="critical",
    rank=1,
    title="Local minima or saddle points: what training reaches",
    question="At the points where the gradient (nearly) vanishes, how many Hessian eigenvalues "
    "are negative, and does gradient descent stop at saddles or at minima?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "kinds": "every run after each phase, by what it reached: a minimum, a saddle, no "
        "critical point (gradient norm above the threshold) or divergence",
        "index-vs-loss": "share of negative Hessian eigenvalues at each critical point against "
        "its training loss; circles after gradient descent, squares after the gradient-norm phase",
        "tolerance": "share of critical points counted as minima when eigenvalues below "
        "-tol·max|λ| count as negative, for a range of tol, recomputed from the saved spectra",
    },
    quick_minutes=0.8,  # 44.6 s wall on the idle 2-core CPU, start-up included
    full_differs="the lecture reports the observation, not a protocol; full runs 100 seeds per "
    "model, 5000 gradient-descent and 10 000 gradient-norm epochs",
)

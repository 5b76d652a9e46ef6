"""Lecture L3 (critical points): at a saddle point, a step along the eigenvector of the most
negative Hessian eigenvalue lowers the loss, while gradient descent from the same point stalls.

Protocol: as for minimal-ratio, seeds of a small network (one population) train on the loss,
then on the squared gradient norm until it is below a threshold, the criterion of a critical
point (float64). There the exact float64 Hessian says saddle (λ_min < -eig_rel_tol·max|λ|) or
minimum. At each saddle: the loss along the unit eigenvector u of λ_min against the quadratic
model L + ½ λ_min α², out to where that model removes ``line_drop`` of the loss; then gradient
descent at a stable step (descent.lr / λ_max) from the saddle and from the line's best point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from dlprobe.config import Bound, PosFloat, PosInt, Seed, require
from dlprobe.data import Dataset
from dlprobe.experiments.kit import Activation, FunctionName, RunContext
from dlprobe.experiments.kit.critical import GRAD_NORM_PHASE
from dlprobe.experiments.kit.experiment import Experiment, Notes, fidelity_row
from dlprobe.experiments.kit.plotting import COLORS, mean_band, new_figure, no_data
from dlprobe.experiments.kit.stats import diverged_lines, group_rows, sci, series
from dlprobe.experiments.kit.sweep import check_batch_sizes, mlp_population, parse_widths
from dlprobe.measure.gradient import population_gradient_norm, population_loss, population_loss_fn
from dlprobe.measure.hessian import population_hessian
from dlprobe.models import mlp_param_count
from dlprobe.train import PerModel, Population, TrainConfig

STARTS = {"saddle": "from the saddle", "escaped": "after one step along u"}  # GD starts
STALL = 0.1  # GD "stalls" when it removes less than this share of the loss in its steps


@dataclass(frozen=True)
class Config:
    model: str = "1-10-10-1"  # layer widths; minimal-ratio's 141-parameter network
    activation: Activation = "sigmoid"  # hidden activation (non-linear)
    function: FunctionName = "sine"  # target function; sine = sin(x) on [0, 2π]
    n_points: Annotated[int, Bound(ge=2)] = 64  # training points, evenly spaced on the domain
    seeds: PosInt = 30  # runs, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i
    # phase 1, the loss; phase 2, the squared gradient norm, each run frozen once its norm is
    # below critical.stop_below_grad_norm, which is also the criterion of a critical point
    train: TrainConfig = TrainConfig(lr=1e-2, epochs=1000, batch_size=0, eval_every_epochs=1000)
    critical: TrainConfig = GRAD_NORM_PHASE  # phase 2, the squared gradient norm
    eig_rel_tol: PosFloat = 1e-6  # λ < -eig_rel_tol · max|λ| counts as a negative eigenvalue
    # the line along u reaches where ½ λ_min α² removes this share of the saddle's loss
    line_drop: Annotated[float, Bound(gt=0, lt=1)] = 0.5
    line_points: Annotated[int, Bound(ge=5)] = 41  # points on the line, α from -max to max
    # GD from each saddle and from its escaped point, same optimizer and steps; lr in units of
    # 1/λ_max: each saddle steps at descent.lr / its largest Hessian eigenvalue (< 2: stable)
    descent: TrainConfig = TrainConfig(
        optimizer="sgd", lr=1.0, epochs=300, batch_size=0, record_steps=True, eval_every_epochs=300
    )

    def check(self) -> None:
        widths = parse_widths(self.model)
        require(widths[0] == 1 and widths[-1] == 1, "model must map 1 input to 1 output")
        require(self.critical.stop_below_grad_norm > 0, "critical.stop_below_grad_norm must be > 0")
        require(self.descent.record_steps, "descent.record_steps must be on (loss per step)")
        require(self.descent.batch_size == 0, "descent.batch_size must be 0: gradient descent")
        check_batch_sizes([self.train.batch_size, self.critical.batch_size], self.n_points)


PROFILES = {
    "smoke": {"model": "1-4-4-1", "n_points": 16, "seeds": 6, "train.epochs": 40,
              "critical.epochs": 40, "critical.eval_every_epochs": 5,
              "critical.stop_below_grad_norm": 3e-2, "descent.epochs": 20},
    "full": {"seeds": 100, "critical.epochs": 10000, "descent.epochs": 2000},
}  # fmt: skip


def _points(cfg: Config, pop: Population, data: Dataset, diverged: set[int]) -> dict:
    """Float64 loss and gradient norm of every run; spectra at critical ones, u's line at saddles."""
    x, y = data.x_train.double(), data.y_train.double()
    params = {n: p.detach().double() for n, p in pop.params.items()}
    loss = population_loss(pop.base, params, F.mse_loss, x, y)  # (K,)
    grad = population_gradient_norm(pop.base, params, F.mse_loss, x, y)  # (K,)
    thr = cfg.critical.stop_below_grad_norm
    crit = [k for k in range(pop.size) if k not in diverged and grad[k] < thr]
    rows = [{"run": k, "seed": s, "loss": float(loss[k]), "grad_norm": float(grad[k]),
             "diverged": k in diverged, "critical": k in crit,
             "kind": "diverged" if k in diverged else "not critical"}
            for k, s in enumerate(pop.seeds)]  # fmt: skip
    lines, escapes = [], {}
    if not crit:
        return {"runs": rows, "lines": lines, "escapes": escapes}
    sub = {n: p[crit] for n, p in params.items()}
    lam, vec = torch.linalg.eigh(population_hessian(pop.base, sub, F.mse_loss, x, y))  # (C, P)
    f, theta, bufs, bdim = population_loss_fn(pop.base, sub, F.mse_loss, x, y, dtype=torch.float64)
    unit = torch.linspace(-1, 1, cfg.line_points, dtype=torch.float64)  # (A,)
    for i, k in enumerate(crit):
        tol = cfg.eig_rel_tol * float(lam[i].abs().max())
        rows[k].update(lambda_min=float(lam[i, 0]), lambda_max=float(lam[i, -1]),
                       negative=int((lam[i] < -tol).sum()), kind="minimum")  # fmt: skip
        if lam[i, 0] >= -tol:
            continue
        g = torch.func.grad(f)(theta[i], bufs)  # (P,) to orient u downhill to first order
        u = vec[i, :, 0] * (-1.0 if float(g @ vec[i, :, 0]) > 0 else 1.0)
        alpha = unit * math.sqrt(2 * cfg.line_drop * float(loss[k]) / -float(lam[i, 0]))
        along = torch.vmap(f, in_dims=(0, None))(theta[i] + alpha[:, None] * u, bufs)  # (A,)
        best = int(torch.where(alpha != 0, along, math.inf).argmin())
        rows[k].update(kind="saddle", alpha_star=float(alpha[best]), loss_star=float(along[best]),
                       grad_along_u=float(g @ u))  # fmt: skip
        escapes[k] = (theta[i] + alpha[best] * u).float()
        lines += [{"run": k, "alpha": float(a), "loss": float(v),
                   "quadratic": float(loss[k]) + 0.5 * float(lam[i, 0]) * float(a) ** 2}
                  for a, v in zip(alpha, along, strict=True)]  # fmt: skip
    return {"runs": rows, "lines": lines, "escapes": escapes}


def _descend(cfg: Config, ctx: RunContext, pop: Population, data: Dataset, found: dict):
    """Gradient descent from every saddle and from its escaped point: per-step losses."""
    escapes, saddles = found["escapes"], sorted(found["escapes"])
    models = {"saddle": [pop.model(k) for k in saddles], "escaped": []}
    for k in saddles:
        model = pop.model(k)
        torch.nn.utils.vector_to_parameters(escapes[k].to(ctx.device), model.parameters())
        models["escaped"].append(model)
    curves, ends = [], []
    steps = np.unique(np.geomspace(1, cfg.descent.epochs, 60).astype(int)) - 1  # log-spaced
    per_saddle = PerModel(lr=[cfg.descent.lr / found["runs"][k]["lambda_max"] for k in saddles])
    for start in STARTS:
        descent = Population.from_models(models[start], [pop.seeds[k] for k in saddles])
        hist = ctx.train(f"descent-from-{start}", descent, data, cfg.descent, per_model=per_saddle)
        loss = np.array(hist.step_loss)  # (steps, S): the loss before each step, to divergence
        final = hist.final_records()
        for j, (k, lr) in enumerate(zip(saddles, per_saddle.lr, strict=True)):
            curves += [{"run": k, "start": start, "step": int(t), "loss": float(loss[t, j])}
                       for t in steps if t < len(loss)]  # fmt: skip
            ends.append({"run": k, "seed": pop.seeds[k], "start": start, "lr": lr, **final[j]})
    return curves, ends


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.function(cfg.function, cfg.n_points)
    widths = parse_widths(cfg.model)
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    phase1 = ctx.train("loss-phase", pop, data, cfg.train)
    phase2 = ctx.train("grad-norm-phase", pop, data, cfg.critical)
    diverged = set(phase1.diverged) | set(phase2.diverged)
    found = ctx.stage("hessians", lambda _: _points(cfg, pop, data, diverged))
    for r in found["runs"]:
        k = r["run"]
        h = phase1 if phase1.diverged_at_epoch[k] is not None else phase2
        r.update(diverged_at_epoch=h.diverged_at_epoch[k], diverged_reason=h.diverged_reason[k])
    curves, ends = _descend(cfg, ctx, pop, data, found) if found["escapes"] else ([], [])
    setup = {"widths": widths, "params": mlp_param_count(widths, cfg.activation),
             "activation": cfg.activation, "function": cfg.function, "n_points": cfg.n_points,
             "threshold": cfg.critical.stop_below_grad_norm, "eig_rel_tol": cfg.eig_rel_tol,
             "line_drop": cfg.line_drop, "descent_lr": cfg.descent.lr,
             "descent_steps": cfg.descent.epochs}  # fmt: skip
    return {
        "setup": setup,
        "runs": found["runs"],
        "lines": found["lines"],
        "curves": curves,
        "descent_ends": ends,
    }


def _line_figure(results: dict):
    fig, ax = new_figure(width=6.4, height=4.2)
    drop = results["setup"]["line_drop"]
    by_run = group_rows(results["lines"], "run")
    for i, ((k,), rows) in enumerate(by_run.items()):
        top, base = max(abs(r["alpha"]) for r in rows), results["runs"][k]["loss"]
        ax.plot([r["alpha"] / top for r in rows], [r["loss"] / base - 1 for r in rows],
                color=COLORS[i % len(COLORS)], lw=1, alpha=0.8)  # fmt: skip
    if by_run:
        a = np.linspace(-1, 1, 101)
        ax.plot(a, -drop * a**2, color="black", ls="--", lw=1.5, label="quadratic model ½λα²")
        ax.set_yscale("symlog", linthresh=1e-3)  # the drops are ~1e-3, the far rises ~1e3
        ax.legend(fontsize=8)
    else:
        no_data(ax, "no saddle among the critical points")
    ax.set(xlabel="α / α_max along the eigenvector of λ_min",
           ylabel="L(θ + αu) / L(θ) - 1 (symlog)", title=f"Loss along u at {len(by_run)} saddles")  # fmt: skip
    return fig


def _descent_figure(results: dict):
    fig, ax = new_figure(width=6.4, height=4.2)
    bad = {(r["run"], r["start"]) for r in results["descent_ends"] if r["diverged"]}
    base = {r["run"]: r["loss"] for r in results["runs"]}
    for i, start in enumerate(STARTS):
        rows = [{**r, "seed": r["run"], "rel": r["loss"] / base[r["run"]]} for r in results["curves"]
                if r["start"] == start and (r["run"], start) not in bad]  # fmt: skip
        if rows:
            steps, runs = series(rows, "step", "rel")
            mean_band(ax, np.array(steps) + 1, runs, STARTS[start], COLORS[i], log=True)
    if ax.lines:
        ax.set(xscale="log", yscale="log")
        ax.legend(fontsize=8)
    else:
        no_data(ax, "no saddle with a descent that did not diverge")
    ax.set(xlabel="gradient descent step + 1", ylabel="L / L(saddle)",
           title=f"Full-batch GD at lr {results['setup']['descent_lr']:g}/λ_max of each saddle "
                 "(geometric mean, band min-max)")  # fmt: skip
    return fig


def _criterion_figure(results: dict):
    fig, ax = new_figure(width=6.4, height=4.2)
    crit = [r for r in results["runs"] if r["critical"]]
    for i, kind in enumerate(("minimum", "saddle")):
        rs = [r for r in crit if r["kind"] == kind]
        ax.scatter([r["grad_norm"] for r in rs], [r["lambda_min"] for r in rs], color=COLORS[i],
                   label=f"{kind} (n={len(rs)})", s=24)  # fmt: skip
    if crit:
        ax.set_yscale("symlog", linthresh=max(1e-12, min(abs(r["lambda_min"]) for r in crit)))
        ax.set(xscale="log")
        ax.legend(fontsize=8)
    else:
        no_data(ax, "no run met the gradient-norm criterion")
    ax.set(xlabel=f"gradient norm (critical: < {results['setup']['threshold']:g})",
           ylabel="λ_min (symlog)", title=f"Smallest Hessian eigenvalue at {len(crit)} critical points")  # fmt: skip
    return fig


def figures(results: dict) -> dict:
    return {
        "line": _line_figure(results),
        "descent": _descent_figure(results),
        "critical-points": _criterion_figure(results),
    }


def _descent_pairs(results: dict) -> list[tuple[int, float, float, float]]:
    """(run, L(saddle), loss after the descent from the saddle, from the escaped point) for
    the saddles whose two descents did not diverge."""
    ends = {(r["run"], r["start"]): r for r in results["descent_ends"]}
    ok = {
        k for k, _ in ends if not (ends[k, "saddle"]["diverged"] or ends[k, "escaped"]["diverged"])
    }
    return [(r["run"], r["loss"], ends[r["run"], "saddle"]["train_loss"],
             ends[r["run"], "escaped"]["train_loss"]) for r in results["runs"] if r["run"] in ok]  # fmt: skip


def _line_notes(results: dict, summary: dict) -> tuple[list[str], dict]:
    sad = [r for r in results["runs"] if r["kind"] == "saddle"]
    drops = [1 - r["loss_star"] / r["loss"] for r in sad]
    lowered = sum(d > 0 for d in drops)
    # at the escape step, ½|λ|α² (curvature) against |g·u| |α| (what the gradient alone gives)
    curved = sum(-r["lambda_min"] * r["alpha_star"] ** 2 / 2 > abs(r["grad_along_u"] * r["alpha_star"])
                 for r in sad)  # fmt: skip
    claim = ("at a saddle, a step along the eigenvector of a negative eigenvalue lowers the loss",
             "lecture L3: θ = θ' + u with λ < 0 gives L(θ) < L(θ')")  # fmt: skip
    if not sad:
        return ["No critical point was a saddle."], fidelity_row(*claim, "no saddle", False,
                                                                  "no critical point was a saddle")  # fmt: skip
    summary["saddles where one step along u lowers the loss"] = f"{lowered}/{len(sad)}"
    summary["median relative drop of that step"] = float(np.median(drops))
    line = (f"One step along the eigenvector of λ_min (to the best point of the line) lowers the "
            f"loss at {lowered} of {len(sad)} saddles, by a median {100 * np.median(drops):.1f}% "
            f"(range {100 * min(drops):.1f}-{100 * max(drops):.1f}%). At {curved} of them the "
            "curvature term ½|λ_min|α² of that step exceeds the gradient term |g·u||α|: only "
            "there is the drop the negative curvature's doing.")  # fmt: skip
    why = f"the loss rose at {len(sad) - lowered} of {len(sad)}"
    return [line], fidelity_row(*claim, f"lower at {lowered}/{len(sad)} saddles "
                                f"(curvature-dominated at {curved})", lowered == len(sad), why)  # fmt: skip


def _descent_notes(results: dict, summary: dict) -> tuple[list[str], dict]:
    pairs, setup = _descent_pairs(results), results["setup"]
    claim = ("gradient descent from the saddle stalls; after the negative-curvature step it goes on",
             "lecture L3: at a critical point the gradient vanishes and GD cannot move")  # fmt: skip
    if not pairs:
        line = "No saddle has two finished descents to compare."
        return [line], fidelity_row(*claim, "nothing to compare", False, "no saddle descended")
    gd, esc = (np.array([1 - p[i] / p[1] for p in pairs]) for i in (2, 3))  # relative decrease
    summary["median relative loss decrease of the descent: from the saddle / escaped"] = [
        float(np.median(gd)), float(np.median(esc))]  # fmt: skip
    lrs = [r["lr"] for r in results["descent_ends"]]
    line = (f"Over {setup['descent_steps']} full-batch GD steps at lr {setup['descent_lr']:g}/λ_max "
            f"of each saddle (lr {sci(min(lrs))}-{sci(max(lrs))}; n = {len(pairs)} saddles) the "
            f"loss's relative decrease is a median {100 * np.median(gd):.1f}% from the saddle "
            f"(range {100 * gd.min():.1f}-{100 * gd.max():.1f}%) and {100 * np.median(esc):.1f}% "
            f"from the escaped point (range {100 * esc.min():.1f}-{100 * esc.max():.1f}%; "
            f"negative: the loss rose); the escape does better at {int((esc > gd).sum())} of "
            f"{len(pairs)} saddles.")  # fmt: skip
    measured = f"median decrease {100 * np.median(gd):.1f}% from the saddle, {100 * np.median(esc):.1f}% after the step"
    ok = 0 <= np.median(gd) < STALL and np.median(esc) > np.median(gd)
    m = np.median(gd)  # a rise is an unstable step, not a stall
    did = f"lost {100 * m:.1f}%" if m >= 0 else f"raised by {-100 * m:.1f}% (no stall)"
    why = (f"GD from the saddle {did} of the loss (stall: 0 to {100 * STALL:g}%) in "
           f"{setup['descent_steps']} steps, the escaped start {100 * np.median(esc):.1f}%")  # fmt: skip
    return [line], fidelity_row(*claim, measured, ok, why)


def notes(results: dict) -> Notes:
    setup, runs, summary = results["setup"], results["runs"], {}
    kinds = {k: [r for r in runs if r["kind"] == k] for k in ("diverged", "not critical", "minimum", "saddle")}  # fmt: skip
    summary.update({f"runs: {k}": len(v) for k, v in kinds.items()})
    far = kinds["not critical"]
    lines = [
        f"{len(runs)} runs; critical (float64 gradient norm < {setup['threshold']:g}): "
        f"{len(kinds['minimum']) + len(kinds['saddle'])}, of which {len(kinds['saddle'])} saddles "
        f"(λ_min < -{setup['eig_rel_tol']:g}·max|λ|) and {len(kinds['minimum'])} minima. Not "
        f"critical, left out: {len(far)}"
        + (f" (seeds {', '.join(str(r['seed']) for r in far)}; gradient norms "
           f"{sci(min(r['grad_norm'] for r in far))}-{sci(max(r['grad_norm'] for r in far))})" if far else "")
        + "."
    ]  # fmt: skip
    parts = [part(results, summary) for part in (_line_notes, _descent_notes)]
    lines, fidelity = lines + [s for more, _ in parts for s in more], [row for _, row in parts]
    lines += diverged_lines(runs, "are left out", keys=("run",))
    lines += diverged_lines(results["descent_ends"], "are left out of the descent comparison",
                            keys=("run", "start"))  # fmt: skip
    return Notes(summary, lines, fidelity=fidelity)


EXPERIMENT = Experiment(
    id="saddle-escape",
    item="Lecture L3",
    part="critical",
    rank=2,
    title="Escaping a saddle point along negative curvature",
    question="At a saddle point, does a step along the eigenvector of the most negative Hessian "
    "eigenvalue lower the loss, while gradient descent from the same point stalls?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "line": "loss along the unit eigenvector u of the most negative eigenvalue at every "
        "saddle, relative to the saddle's loss, α scaled to the line's end; dashed: the "
        "quadratic model, the same parabola for all after this scaling",
        "descent": "loss per full-batch gradient-descent step relative to the saddle's loss, "
        "from the saddle and after one step to the best point along u",
        "critical-points": "smallest Hessian eigenvalue against the gradient norm at every "
        "critical point, by kind",
    },
    quick_minutes=0.8,  # 44 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="the lecture shows the argument on paper; full runs 100 seeds with 10 000 "
    "gradient-norm epochs and 2000 descent steps",
)

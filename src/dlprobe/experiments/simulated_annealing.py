"""HW1 presentation: simulated annealing (SA) against gradient descent (GD).

Protocol: GD and SA start from the same points; SA proposes x' = x + N(0, step² I) and takes
it with probability min(1, exp(-ΔL / T)), T falling geometrically. Equal budget in loss
evaluations: a GD step counts ``evaluations_per_gradient`` (forward + backward ≈ 3 forwards).
(1) Rastrigin in 1-D and 2-D (global minimum 0 at the origin, a local minimum near every
integer point): share of starts ending in the global basin. (2) A tiny network, a population
of seeds, SA from the same initial weights: final training loss by seed. (3) SA's
acceptance rate against the temperature.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from dlprobe.config import Bound, PosFloat, PosInt, Seed, require
from dlprobe.experiments.kit import Activation, FunctionName, RunContext
from dlprobe.experiments.kit.experiment import Experiment, Notes, fidelity_row
from dlprobe.experiments.kit.plotting import COLORS, mean_band, new_figure, no_data
from dlprobe.experiments.kit.stats import column, diverged_lines, group_rows, sci, series, spearman
from dlprobe.experiments.kit.sweep import mlp_population, parse_widths
from dlprobe.measure.gradient import population_loss_fn
from dlprobe.models import mlp_param_count
from dlprobe.train import TrainConfig
from dlprobe.train.annealing import Annealed, anneal

BOX = 5.12  # starts are uniform on [-BOX, BOX]^d, Rastrigin's usual domain


@dataclass(frozen=True)
class Annealing:
    t_start: PosFloat  # temperature of the first proposal, in loss units
    t_end: PosFloat  # temperature of the last proposal; geometric in between
    step: PosFloat  # std of the Gaussian proposal in every coordinate


@dataclass(frozen=True)
class Config:
    dims: tuple[Annotated[int, Bound(ge=1, le=2)], ...] = (1, 2)  # Rastrigin dimensions, 1 or 2
    n_starts: PosInt = 200  # starting points per function, uniform on [-5.12, 5.12]^d
    function_lr: PosFloat = 1e-3  # GD step there; stable below 2/(2 + 40π²) ≈ 5e-3 (curvature)
    function_steps: PosInt = 1000  # GD steps on the functions
    function_annealing: Annealing = Annealing(t_start=10.0, t_end=0.01, step=0.5)
    model: str = "1-8-8-1"  # layer widths of the tiny network
    activation: Activation = "tanh"  # its hidden activation
    function: FunctionName = "sinc"  # the network's target function
    n_points: Annotated[int, Bound(ge=2)] = 64  # training points, evenly spaced on the domain
    seeds: PosInt = 10  # networks (and SA chains from the same initial weights)
    seed: Seed = 0  # base seed: network i uses seed + i; starts and proposals use it too
    # the network's GD: full batch (batch_size 0), so a step is one gradient of the loss
    train: TrainConfig = TrainConfig(
        optimizer="sgd", lr=0.3, epochs=1000, batch_size=0, eval_every_epochs=25
    )
    network_annealing: Annealing = Annealing(t_start=1e-2, t_end=1e-6, step=0.02)
    evaluations_per_gradient: PosFloat = 3.0  # loss evaluations one GD step counts as
    windows: Annotated[int, Bound(ge=2)] = 40  # parts of the schedule with an acceptance rate

    def check(self) -> None:
        require(self.train.batch_size == 0, "train.batch_size must be 0: GD is full batch")
        parse_widths(self.model)
        for name in ("function_annealing", "network_annealing"):
            a = getattr(self, name)
            require(a.t_end < a.t_start, f"{name}.t_end must be below its t_start")
        for steps in (self.function_steps, self.train.epochs):
            require(self.sa_steps(steps) >= self.windows, "fewer SA proposals than windows")

    def sa_steps(self, gd_steps: int) -> int:
        """SA proposals with the budget of ``gd_steps`` gradient steps."""
        return round(gd_steps * self.evaluations_per_gradient)


PROFILES = {
    "smoke": {"n_starts": 24, "function_steps": 60, "model": "1-4-4-1", "n_points": 16,
              "seeds": 3, "train.epochs": 60, "train.eval_every_epochs": 10, "windows": 6},
    "full": {"n_starts": 1000, "function_steps": 5000, "seeds": 50, "train.epochs": 20000},
}  # fmt: skip


def rastrigin(x: torch.Tensor) -> torch.Tensor:
    """(n,) Rastrigin function of points (n, d): 10·d + Σ x² - 10 cos(2πx)."""
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def _acceptance_rows(problem: str, sa: Annealed) -> list[dict]:
    rate = sa.acceptance.numpy()  # (windows, chains)
    lo, hi = np.quantile(rate, [0.1, 0.9], axis=1)  # (windows,) each
    return [{"problem": problem, "temperature": t, "mean": float(r.mean()), "p10": float(a),
             "p90": float(b), "chains": r.size}
            for t, r, a, b in zip(sa.temperature, rate, lo, hi, strict=True)]  # fmt: skip


def _functions(cfg: Config) -> dict:
    """GD and SA from the same uniform starts on each Rastrigin function."""
    runs, acceptance = [], []
    for d in cfg.dims:
        gen = torch.Generator().manual_seed(cfg.seed + d)
        x0 = (2 * torch.rand(cfg.n_starts, d, generator=gen, dtype=torch.float64) - 1) * BOX
        sa = anneal(rastrigin, x0, **vars(cfg.function_annealing), windows=cfg.windows,
                    steps=cfg.sa_steps(cfg.function_steps), seed=cfg.seed)  # fmt: skip
        acceptance += _acceptance_rows(f"Rastrigin {d}-D", sa)
        gd = x0.clone()  # gradient descent from the same starts, all at once
        for _ in range(cfg.function_steps):
            (g,) = torch.autograd.grad(rastrigin(gd.requires_grad_(True)).sum(), gd)
            gd = (gd - cfg.function_lr * g).detach()
        for method, x in (("GD", gd), ("SA", sa.x)):
            for i, (xi, loss) in enumerate(zip(x, rastrigin(x), strict=True)):
                ok = bool(torch.isfinite(loss))  # in the basin: the nearest integer point is 0
                runs.append({"problem": f"Rastrigin {d}-D", "dims": d, "method": method,
                             "start": i, "seed": cfg.seed + d, "x": xi.tolist(),
                             "loss": float(loss), "diverged": not ok,
                             "global_basin": ok and not xi.round().any()})  # fmt: skip
    return {"runs": runs, "acceptance": acceptance}


def _network(cfg: Config, ctx: RunContext) -> tuple[list[dict], list[dict], list[dict]]:
    """GD (a trained population) and SA chains from the same initial weights."""
    data = ctx.function(cfg.function, cfg.n_points)
    pop = mlp_population(parse_widths(cfg.model), cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    f, x0, bufs, bdim = population_loss_fn(pop.base, pop.params, F.mse_loss, data.x_train,
                                           data.y_train, pop.buffers)  # fmt: skip
    loss = lambda theta: torch.vmap(f, in_dims=(0, bdim))(theta, bufs)  # (K, P) -> (K,)  # noqa: E731
    steps, per, start = cfg.sa_steps(cfg.train.epochs), cfg.evaluations_per_gradient, loss(x0)
    a = {**vars(cfg.network_annealing), "steps": steps, "windows": cfg.windows, "seed": cfg.seed}
    sa = ctx.stage("annealing", lambda _: vars(anneal(loss, x0, **a)))
    hist = ctx.train("gradient-descent", pop, data, cfg.train)
    runs = [{"method": "GD", "loss": r.pop("train_loss"), **r} for r in hist.final_records()]
    curves = [{"method": "GD", "seed": s, "evaluations": 0, "loss": float(v)}
              for s, v in zip(pop.seeds, start, strict=True)]  # fmt: skip
    curves += [{"method": "GD", "seed": r["seed"], "evaluations": r["epoch"] * per,
                "loss": r["train_loss"]} for r in hist.epoch_records()]  # fmt: skip
    for k, seed in enumerate(pop.seeds):
        end = float(sa["loss"][k])
        runs.append({"method": "SA", "loss": end, "seed": seed, "diverged": not math.isfinite(end)})
        trace = [(0, start[k]), *zip(sa["window_end"], sa["window_loss"][:, k], strict=True)]
        curves += [{"method": "SA", "seed": seed, "evaluations": e, "loss": float(v)}
                   for e, v in trace]  # fmt: skip
    return runs, curves, _acceptance_rows("network", Annealed(**sa))


def run(cfg: Config, ctx: RunContext) -> dict:
    functions = ctx.stage("functions", lambda _: _functions(cfg))
    network_runs, curves, network_acceptance = _network(cfg, ctx)
    params = mlp_param_count(parse_widths(cfg.model), cfg.activation)
    sa_steps = {"function_sa_steps": cfg.sa_steps(cfg.function_steps),
                "network_sa_steps": cfg.sa_steps(cfg.train.epochs)}  # fmt: skip
    return {
        "setup": {**dataclasses.asdict(cfg), "params": params, **sa_steps},
        "function_runs": functions["runs"],
        "network_runs": network_runs,
        "acceptance": functions["acceptance"] + network_acceptance,
        "curves": curves,
    }


def _functions_figure(results: dict):
    dims = results["setup"]["dims"]
    fig, axes = new_figure(ncols=len(dims), width=5.6, height=4.4, squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        g = torch.linspace(-BOX, BOX, 201 if d == 2 else 1001, dtype=torch.float64)
        if d == 2:  # the surface in grey, and one marker per minimum reached
            xx, yy = torch.meshgrid(g, g, indexing="xy")
            ax.contourf(xx, yy, rastrigin(torch.stack([xx, yy], -1)), levels=20, cmap="Greys")
        else:
            ax.plot(g, rastrigin(g[:, None]), color="grey", lw=0.8)
        rows = group_rows([r for r in results["function_runs"] if r["dims"] == d], "method")
        for i, ((method,), rs) in enumerate(rows.items()):
            ends = np.array([np.round(r["x"]) for r in rs if not r["diverged"]]).reshape(-1, d)
            spots, counts = np.unique(ends, axis=0, return_counts=True)
            xy = spots.T if d == 2 else (spots[:, 0], rastrigin(torch.tensor(spots)).numpy())
            label = f"{method}: {sum(r['global_basin'] for r in rs)}/{len(rs)} in the global basin"
            ax.scatter(*xy, s=10 + 600 * counts / len(rs), marker="os"[i], facecolors="none",
                       edgecolors=COLORS[i], lw=1.5, label=label)  # fmt: skip
        ax.set(title=f"Rastrigin {d}-D: where {len(rs)} starts end (area: share of starts)",
               xlabel="x₁" if d == 2 else "x", ylabel="x₂" if d == 2 else "f(x)")  # fmt: skip
        for handle in ax.legend(fontsize=8, loc="upper center").legend_handles:
            handle.set_sizes([40])  # the legend shows the marker, not a share
    fig.tight_layout()
    return fig


def _acceptance_figure(results: dict):
    fig, ax = new_figure(width=6.6, height=4.2)
    for i, ((problem,), rows) in enumerate(group_rows(results["acceptance"], "problem").items()):
        t = [r["temperature"] for r in rows]
        ax.plot(t, [r["mean"] for r in rows], color=COLORS[i], marker=".",
                label=f"{problem} (n={rows[0]['chains']} chains)")  # fmt: skip
        ax.fill_between(t, [r["p10"] for r in rows], [r["p90"] for r in rows],
                        color=COLORS[i], alpha=0.18, lw=0)  # fmt: skip
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="temperature (log; the schedule runs →)",
           ylabel="share of proposals accepted", title="SA acceptance per part of the schedule")  # fmt: skip
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    return fig


def _network_figure(results: dict):
    setup, pairs = results["setup"], _pairs(results)
    fig, (left, right) = new_figure(ncols=2, width=5.4, height=4.2)
    bad = {(r["method"], r["seed"]) for r in results["network_runs"] if r["diverged"]}
    for i, method in enumerate(("GD", "SA")):
        kept = [r for r in results["curves"] if r["method"] == method]
        if rows := [r for r in kept if (method, r["seed"]) not in bad]:
            mean_band(left, *series(rows, "evaluations", "loss"), method, COLORS[i], log=True)
    left.set(yscale="log", ylabel="training loss (MSE)", title="geometric mean, band min-max",
             xlabel=f"loss evaluations (GD step = {setup['evaluations_per_gradient']:g})")  # fmt: skip
    left.legend(fontsize=8)
    if pairs:
        gd, sa = np.array(pairs).T
        right.scatter(gd, sa, color=COLORS[2])
        ends = [min(gd.min(), sa.min()) / 1.5, max(gd.max(), sa.max()) * 1.5]
        right.plot(ends, ends, color="grey", ls="--", lw=0.8)
        right.set(xscale="log", yscale="log", xlabel="GD final loss", ylabel="SA final loss",
                  title=f"by seed: SA lower on {int((sa < gd).sum())} of {len(pairs)} (dashed: equal)")  # fmt: skip
    else:
        no_data(right, "no seed with a finite GD and SA loss to pair")
    fig.suptitle(f"MLP {setup['model']} ({setup['params']} params, {setup['activation']}) on "
                 f"{setup['function']}; {len(bad)} diverged run(s) left out")  # fmt: skip
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    return {
        "functions": _functions_figure(results),
        "acceptance": _acceptance_figure(results),
        "network": _network_figure(results),
    }


def _pairs(results: dict) -> list[tuple[float, float]]:
    """(GD, SA) final losses of the seeds where neither diverged."""
    by = {(r["method"], r["seed"]): r for r in results["network_runs"]}
    seeds = [
        s for m, s in by if m == "GD" and not by["GD", s]["diverged"] | by["SA", s]["diverged"]
    ]
    return [(by["GD", s]["loss"], by["SA", s]["loss"]) for s in seeds]


def _function_notes(results: dict, summary: dict) -> tuple[list[str], dict]:
    lines, counts = [], []
    for (problem,), rs in group_rows(results["function_runs"], "problem").items():
        (g, g_med, n), (a, a_med, _) = [
            (sum(r["global_basin"] for r in m), np.nanmedian(column(m, "loss")), len(m))
            for m in group_rows(rs, "method").values()
        ]
        summary[f"{problem}: share of starts ending in the global basin, GD / SA"] = [g / n, a / n]
        lines.append(f"{problem}: {g} of {n} GD starts and {a} of {n} SA starts end in the "
                     "global minimum's basin (nearest integer point = origin); median final f: "
                     f"GD {g_med:.3g}, SA {a_med:.3g}.")  # fmt: skip
        counts.append((problem, g, a, n))
    return lines, fidelity_row(
        "simulated annealing leaves local minima that trap gradient descent",
        "HW1 presentation ('Power of Random'): moves accepted by temperature reach the "
        "global minimum of a function with many local minima; GD stays in the nearest one",
        "; ".join(f"{p}: GD {g}/{n}, SA {a}/{n} in the global basin" for p, g, a, n in counts),
        all(a > g for _, g, a, _ in counts),
        "SA was not ahead on " + ", ".join(p for p, g, a, _ in counts if a <= g),
    )


def _network_notes(results: dict, summary: dict) -> tuple[list[str], dict]:
    pairs, params = _pairs(results), results["setup"]["params"]
    claim = ("on a network, GD beats annealing", "HW1 presentation: 'Why still GD?'")
    if not pairs:
        line = "Network: no seed has a finite GD and SA loss, so no pair is compared."
        return [line], fidelity_row(*claim, "no pairs", False, "every GD run diverged")
    gd, sa = np.array(pairs).T
    wins, g_med, a_med, n = int((sa < gd).sum()), np.median(gd), np.median(sa), len(gd)
    summary["network: median final train loss over paired seeds, GD / SA"] = [g_med, a_med]
    summary["network: seeds where SA ends lower than GD"] = f"{wins}/{n}"
    line = (f"Network ({params} parameters, n = {n} paired seeds): median final training loss "
            f"GD {sci(g_med)} (range {sci(gd.min())}-{sci(gd.max())}), SA {sci(a_med)} (range "
            f"{sci(sa.min())}-{sci(sa.max())}); SA ends lower on {wins} of {n} seeds.")  # fmt: skip
    measured = f"median final loss GD {sci(g_med)}, SA {sci(a_med)}; SA lower on {wins}/{n}"
    why = f"on this {params}-parameter network SA ended lower on {wins} of {n} seeds"
    return [line], fidelity_row(*claim, measured, g_med < a_med and 2 * wins < n, why)


def _acceptance_notes(results: dict, summary: dict) -> tuple[list[str], dict]:
    lines, trends = [], {}
    for (problem,), rows in group_rows(results["acceptance"], "problem").items():
        rho, w = spearman([math.log(r["temperature"]) for r in rows], [r["mean"] for r in rows])
        (t0, a0), (t1, a1) = [(r["temperature"], r["mean"]) for r in (rows[0], rows[-1])]
        summary[f"{problem}: acceptance rate, hottest / coldest window"] = [a0, a1]
        lines.append(f"{problem}: SA accepts {100 * a0:.0f}% of proposals at T ≈ {t0:.3g} and "
                     f"{100 * a1:.1f}% at T ≈ {t1:.3g} (Spearman ρ of log T and the rate "
                     f"{rho:.2f} over {w} windows).")  # fmt: skip
        trends[problem] = (a0, a1, a1 < a0 and rho > 0)
    return lines, fidelity_row(
        "the acceptance of uphill moves falls with the temperature",
        "HW1 presentation: at T = 5 far more moves are taken than at T = 1",
        "; ".join(f"{p}: {100 * a0:.0f}% → {100 * a1:.1f}%" for p, (a0, a1, _) in trends.items()),
        all(ok for *_, ok in trends.values()),
        "the rate did not fall on " + ", ".join(p for p, (*_, ok) in trends.items() if not ok),
    )


def notes(results: dict) -> Notes:
    s, summary, fidelity = results["setup"], {}, []
    fa, na = s["function_annealing"], s["network_annealing"]
    lines = [
        f"Held equal: the starts and the loss evaluations (a GD step counts "
        f"{s['evaluations_per_gradient']:g}): {s['function_steps']} GD steps at lr "
        f"{s['function_lr']:g} vs {s['function_sa_steps']} SA proposals (step {fa['step']:g}, T "
        f"{fa['t_start']:g} → {fa['t_end']:g}) on the functions, {s['train']['epochs']} "
        f"full-batch GD steps at lr {s['train']['lr']:g} vs {s['network_sa_steps']} proposals "
        f"(step {na['step']:g}, T {na['t_start']:g} → {na['t_end']:g}) on the network."
    ]
    for part in (_function_notes, _network_notes, _acceptance_notes):
        more, row = part(results, summary)
        lines, fidelity = lines + more, [*fidelity, row]
    lines += diverged_lines(results["network_runs"], "were left out of the paired comparison",
                            keys=("method",))  # fmt: skip
    lines += diverged_lines(results["function_runs"], "count as not reaching the global basin",
                            keys=("problem", "method", "start"))  # fmt: skip
    return Notes(summary, lines, fidelity=fidelity)


EXPERIMENT = Experiment(
    id="simulated-annealing",
    item="HW1 presentation",
    part="escape",
    rank=1,
    title="Simulated annealing against gradient descent",
    question="Does simulated annealing escape local minima that trap gradient descent, does "
    "its acceptance rate follow the temperature, and does it lose to GD on a network?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "functions": "one marker per local minimum reached (nearest integer point), its area "
        "the share of starts; 1-D drawn over f",
        "acceptance": "share of SA proposals accepted per window of the schedule (hot on the "
        "left): mean over chains, band 10th-90th percentile",
        "network": "left: training loss against loss evaluations spent; right: each seed's "
        "final loss, GD against SA from the same initial weights",
    },
    quick_minutes=0.5,  # 28 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="the presentation shows one 1-D example; full runs 1000 starts, 5000 GD "
    "steps on the functions and 50 networks for 20 000 GD steps",
)

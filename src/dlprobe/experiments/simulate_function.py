"""HW1-1 deep vs shallow: fit 1-D functions with models of equal parameter count.

Protocol: for each target function and each model (same number of parameters, different
depth), train a population of seeds on evenly spaced points with the same optimizer,
epochs and initialisation, and record the training loss. Each run is then sorted by how
it ended (diverged, collapsed to a constant, trained without fitting, fine: see
``kit/outcomes.py``), and depths are compared over the fine runs only: a deep narrow net
that never trained says nothing about what depth can express. The homework's reference
trio has 571-572 parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import numpy as np
import torch

from dlprobe.data import FUNCTIONS
from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    Experiment,
    FunctionName,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_mlp_fits,
    fidelity_row,
    group_rows,
    mean_band,
    new_figure,
    one_of,
    parse_widths,
    require,
    sci,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.outcomes import (
    FINE,
    collapse_probe,
    excluded_lines,
    outcome,
    outcome_scatter,
    outcome_table,
)
from dlprobe.models import INITS, MLP, mlp_param_count, mlp_widths_for_budget
from dlprobe.train import Population, TrainConfig

REFERENCE_MODELS = ("1-5-10-10-10-10-10-5-1", "1-10-18-15-4-1", "1-190-1")


@dataclass(frozen=True)
class Config:
    functions: tuple[FunctionName, ...] = ("sinc", "sgn-sin")  # target functions
    models: tuple[str, ...] = REFERENCE_MODELS  # layer widths; the homework's 571-param trio
    depths: tuple[PosInt, ...] = ()  # if set: hidden layers per model, widths solved for the budget
    param_budget: PosInt = 571  # parameters per model when depths is set (matched within 2%)
    activation: Activation = "relu"  # hidden activation
    # weight initialisation: "kaiming" draws N(0, 2/fan_in) for ReLU, so the signal keeps its
    # scale through depth; "default" (PyTorch's uniform) often collapses deep narrow ReLU nets
    init: one_of(INITS, "init") = "kaiming"
    n_points: Annotated[int, Bound(ge=2)] = 256  # training points, evenly spaced on the domain
    seeds: PosInt = 5  # training runs per model, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i
    # a run has fitted its function when its final training loss is below this share of
    # the target's variance (the loss of the best constant), i.e. R² above 1 minus it
    fit_loss_share: Annotated[float, Bound(gt=0, lt=1)] = 0.2
    # full batch (batch_size 0); eval_every_epochs is the loss-curve resolution
    train: TrainConfig = TrainConfig(lr=3e-3, epochs=3000, batch_size=0, eval_every_epochs=10)

    def check(self) -> None:
        require(len(self.functions) >= 1, "give at least one function")
        require(
            self.train.batch_size <= self.n_points,
            f"batch_size must be <= n_points ({self.n_points}), got {self.train.batch_size}",
        )
        for widths in self.model_widths():
            check_mlp_fits(widths, self.activation, self.seeds)

    def model_widths(self) -> list[list[int]]:
        if self.depths:
            return [
                mlp_widths_for_budget(1, 1, d, self.param_budget, self.activation)
                for d in self.depths
            ]
        require(len(self.models) >= 1, "give at least one model")
        return [parse_widths(m) for m in self.models]


PROFILES = {
    "smoke": {
        "functions": ("sinc",),
        "models": ("1-4-4-1", "1-9-1"),
        "n_points": 32,
        "seeds": 2,
        "train.epochs": 200,
        "train.lr": 1e-2,
        "train.eval_every_epochs": 20,
    },
    "full": {"train.epochs": 20000, "train.lr": 1e-3, "train.eval_every_epochs": 50},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    models = [
        {"label": f"{len(w) - 2} hidden ({'-'.join(map(str, w))})", "widths": w,
         "depth": len(w) - 2, "params": mlp_param_count(w, cfg.activation)}
        for w in cfg.model_widths()
    ]  # fmt: skip
    seeds = seeds_from(cfg.seed, cfg.seeds)
    curves, predictions, truth, finals = [], [], [], []
    for fname in cfg.functions:
        data = ctx.function(fname, cfg.n_points)
        x_plot = data.x_test  # (n_test, 1) finer grid for drawing
        truth.append(
            {"function": fname, "x": x_plot[:, 0].tolist(), "y": data.y_test[:, 0].tolist()}
        )
        for m in models:
            pop = Population(partial(MLP, m["widths"], cfg.activation, init=cfg.init), seeds,
                             ctx.device)  # fmt: skip
            hist = ctx.train(f"{fname}-{m['depth']}h", pop, data, cfg.train)
            tag = {"function": fname, "model": m["label"]}
            curves += [
                {**tag, "seed": r["seed"], "epoch": r["epoch"], "train_loss": r["train_loss"]}
                for r in hist.epoch_records()
            ]
            with torch.no_grad():
                pop.train(False)
                y_hat = pop.forward(x_plot, shared=True)[..., 0].tolist()  # (K, n_test)
            predictions += [{**tag, "seed": s, "y": y} for s, y in zip(seeds, y_hat, strict=True)]
            probes = collapse_probe(pop, data.x_train, data.y_train)
            for final, probe in zip(hist.final_records(), probes, strict=True):
                row = {**tag, "depth": m["depth"], "params": m["params"], **final, **probe}
                loss = final["train_loss"]
                share = loss / probe["constant_loss"] if math.isfinite(loss) else None
                fitted = share is not None and share < cfg.fit_loss_share
                finals.append({**row, "loss_share": share, "outcome": outcome(row, fitted)})
    return {
        "models": models,
        "functions": [
            {"name": f, "formula": FUNCTIONS[f].formula, "domain": list(FUNCTIONS[f].domain)}
            for f in cfg.functions
        ],
        "held_equal": {
            "init": cfg.init,
            "n_points": cfg.n_points,
            **{k: getattr(cfg.train, k) for k in ("optimizer", "lr", "epochs")},
        },
        "fit_loss_share": cfg.fit_loss_share,
        "curves": curves,
        "predictions": predictions,
        "truth": truth,
        "final": finals,
        "seeds": seeds,
    }


def _loss_figure(results: dict, f: dict, labels: list[str], final: dict):
    fig, ax = new_figure()
    params = {m["label"]: m["params"] for m in results["models"]}
    by_model = group_rows([r for r in results["curves"] if r["function"] == f["name"]], "model")
    for i, label in enumerate(labels):
        by_seed = group_rows(by_model[(label,)], "seed")
        fine = [r for (s,), rs in by_seed.items() for r in rs if final[f["name"], label, s] == FINE]
        if fine:
            xs, runs = series(fine, "epoch", "train_loss")
            mean_band(ax, xs, runs, f"{label}, {params[label]} params", COLORS[i], log=True)
        for (seed,), rows in by_seed.items():
            if final[f["name"], label, seed] != FINE:
                ax.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows],
                        color=COLORS[i], lw=1.2, ls=":")  # fmt: skip
    ax.set_yscale("log")
    title = f"Training loss: {f['formula']}\nline: geometric mean of fine runs (n in legend)"
    ax.set(xlabel="epoch", ylabel="training loss (MSE)", title=title + "; dotted: left out")
    ax.title.set_fontsize(9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _fit_figure(results: dict, f: dict, labels: list[str], final: dict, loss: dict):
    fig, ax = new_figure()
    (truth,) = [r for r in results["truth"] if r["function"] == f["name"]]
    ax.plot(truth["x"], truth["y"], color="black", lw=2.5, label="ground truth", alpha=0.8)
    for i, label in enumerate(labels):
        runs = [
            r for r in results["predictions"] if (r["function"], r["model"]) == (f["name"], label)
        ]
        fine = [r["seed"] for r in runs if final[f["name"], label, r["seed"]] == FINE]
        best = min(fine, key=lambda s: loss[f["name"], label, s], default=None)
        for r in runs:
            is_best, out = r["seed"] == best, final[f["name"], label, r["seed"]] != FINE
            ax.plot(truth["x"], r["y"], color=COLORS[i], lw=1.5 if is_best else 0.7,
                    ls=":" if out else "-", alpha=1 if is_best or out else 0.4,
                    label=f"{label}: best of {len(fine)} fine runs" if is_best else None)  # fmt: skip
    title = f"Fits of {f['formula']} (thin: other fine runs, dotted: left out)"
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    return fig


def _outcome_figure(results: dict, labels: list[str]):
    functions, share = results["functions"], results["fit_loss_share"]
    fig, axes = new_figure(ncols=len(functions), width=5.0, squeeze=False)
    for ax, f in zip(axes[0], functions, strict=True):
        rows = [r for r in results["final"] if r["function"] == f["name"]]
        outcome_scatter(ax, rows, labels, "model", "loss_share")
        ax.axhline(share, color="gray", ls="--", lw=0.8)
        ax.axhline(1.0, color="black", ls=":", lw=0.8)  # the best constant prediction
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), [lab.split(" (")[0] for lab in labels])
        ax.set(title=f["formula"], ylabel="final training loss / target variance")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"How each run ended; dashed: fit threshold ({share:g} of the variance), "
                 "dotted: loss of the best constant")  # fmt: skip
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    labels = [m["label"] for m in results["models"]]
    keys = [(r["function"], r["model"], r["seed"]) for r in results["final"]]
    final = dict(zip(keys, (r["outcome"] for r in results["final"]), strict=True))
    loss = dict(zip(keys, (r["train_loss"] for r in results["final"]), strict=True))
    figs = {"outcomes": _outcome_figure(results, labels)}
    for f in results["functions"]:
        figs[f"loss-{f['name']}"] = _loss_figure(results, f, labels, final)
        figs[f"fit-{f['name']}"] = _fit_figure(results, f, labels, final, loss)
    return figs


def _compare(f: dict, results: dict, depth: dict) -> tuple[str, list[tuple[str, list]]]:
    """The report's comparison on one function, and the models with at least 2 fine runs
    ranked by the median final training loss of their fine runs: (label, losses)."""
    rows = group_rows([r for r in results["final"] if r["function"] == f["name"]], "model")
    fine = {
        lab: [r["train_loss"] for r in rs if r["outcome"] == FINE] for (lab,), rs in rows.items()
    }
    ranked = sorted(
        ((k, v) for k, v in fine.items() if len(v) >= 2), key=lambda kv: np.median(kv[1])
    )
    counts = ", ".join(f"{depth[k]} hidden {len(v)}/{len(rows[(k,)])}" for k, v in fine.items())
    line = f"{f['formula']}: fine runs per model: {counts}."
    if unranked := [f"{depth[k]} hidden" for k, v in fine.items() if len(v) < 2]:
        line += f" Fewer than 2 fine runs, not ranked: {', '.join(unranked)}."
    if len(ranked) < 2:
        return line + " Fewer than two models have 2 fine runs: no depth comparison.", ranked
    parts = ", ".join(
        f"{depth[k]} hidden {sci(np.median(v))} (best {sci(min(v))}, n={len(v)})" for k, v in ranked
    )
    (top, a), (low, b) = ranked[0], ranked[-1]
    single, second = min(ranked, key=lambda kv: min(kv[1]))[0], ranked[1]
    overlap = max(a) > min(second[1])  # the best two models' runs interleave
    return line + (
        f" Median final training loss of the fine runs: {parts}. The {depth[top]}-hidden-layer "
        f"model fits best, {np.median(b) / max(np.median(a), 1e-300):.1f}x lower than the "
        f"{depth[low]}-hidden-layer model; the single best run is {depth[single]}-hidden-layer."
        + (f" The runs of the best two ({depth[top]} and {depth[second[0]]} hidden) overlap: "
           "their order is not settled by these seeds." if overlap else "")
    ), ranked  # fmt: skip


def notes(results: dict) -> Notes:
    held, share = results["held_equal"], results["fit_loss_share"]
    epochs = held["epochs"]
    depth = {m["label"]: m["depth"] for m in results["models"]}
    summary = {}
    for (fname, label), rows in group_rows(results["final"], "function", "model").items():
        fine = [r["train_loss"] for r in rows if r["outcome"] == FINE]
        median_best = [float(np.median(fine)), min(fine)] if fine else [np.nan, np.nan]
        summary[f"{fname}: {label}: median / best final train loss of fine runs"] = median_best
        summary[f"{fname}: {label}: fine runs"] = f"{len(fine)}/{len(rows)}"
    params = [m["params"] for m in results["models"]]
    lines = [
        f"Held equal: {min(params)}-{max(params)} parameters (spread "
        f"{100 * (max(params) - min(params)) / max(params):.1f}%), {held['init']} "
        f"initialisation, {held['optimizer']} at lr {held['lr']:g}, {epochs} full-batch "
        f"epochs on {held['n_points']} points, {len(results['seeds'])} seeds per model. A run "
        f"is fine when its final training loss is below {share:g} of the target's variance "
        "and it neither collapsed nor diverged."
    ]
    measured, why, shallow = [], [], min(depth.values())
    for f in results["functions"]:
        line, ranked = _compare(f, results, depth)
        lines.append(line)
        by_depth = {depth[label]: losses for label, losses in ranked}
        if len(ranked) < 2 or shallow not in by_depth:
            measured.append(f"{f['name']}: too few fine runs to rank")
            why.append(f"on {f['name']} the shallowest or all but one model had < 2 fine runs")
            continue
        best, losses = depth[ranked[0][0]], ranked[0][1]
        measured.append(f"{f['name']}: {best} hidden best ({sci(np.median(losses))})")
        if best == shallow or max(losses) > min(by_depth[shallow]):
            what = "fits best" if best == shallow else f"overlaps the {best}-hidden-layer model"
            why.append(f"on {f['name']} the {shallow}-hidden-layer model {what}")
    name = lambda r: f"{r['function']}, {depth[r['model']]} hidden, seed {r['seed']}"  # noqa: E731
    lines += excluded_lines(results["final"], name, f"loss < {share:g} x variance")
    fidelity = fidelity_row(
        "depth helps at equal parameters on non-linear functions",
        "homework's 571-param trio after 20 000 epochs: deeper models reach lower loss",
        "; ".join(measured) + f" (median of fine runs, {epochs} epochs)",
        not why,
        "; ".join(why) + f" after {epochs} epochs (reference: 20 000)",
    )
    table = outcome_table(results["final"], "function", "model")
    return Notes(summary, lines, [("Outcomes per model", table)], [fidelity])


EXPERIMENT = Experiment(
    id="simulate-function",
    item="HW1-1",
    part="hw1-1",
    rank=1,
    title="Deep vs shallow on simulated functions",
    question="With the same number of parameters, do deeper networks fit a non-linear "
    "1-D function better than shallow ones?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "outcomes": "final training loss of every run relative to the target's variance (1 = "
        "the best constant prediction), marked by how the run ended; dashed: the fit threshold",
        **{
            f"loss-{n}": f"training loss per epoch (log scale) of every model on {f.formula}; "
            "line = geometric mean over the fine runs, band = their min-max; dotted: runs "
            "left out (collapsed, diverged or not fitted)"
            for n, f in FUNCTIONS.items()
        },
        **{
            f"fit-{n}": f"ground truth {f.formula} and each model's prediction: its best fine "
            "run bold, other fine runs thin, runs left out dotted"
            for n, f in FUNCTIONS.items()
        },
    },
    quick_minutes=1.1,
    full_differs="3000 epochs at lr 3e-3 instead of the homework's 20 000 epochs (the full "
    "profile, lr 1e-3).",
)

"""HW1-1 deep vs shallow: fit 1-D functions with models of equal parameter count.

Protocol: for each target function and each model (same number of parameters, different
depth), train a population of seeds on evenly spaced points, record the training loss,
and compare the final fits. The homework's reference trio has 571-572 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    group_rows,
    mean_band,
    mlp_population,
    new_figure,
    parse_widths,
    require,
    sci,
    series,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.models import mlp_param_count, mlp_widths_for_budget
from dlprobe.train import TrainConfig

REFERENCE_MODELS = ("1-5-10-10-10-10-10-5-1", "1-10-18-15-4-1", "1-190-1")


@dataclass(frozen=True)
class Config:
    functions: tuple[FunctionName, ...] = ("sinc", "sgn-sin")  # target functions
    models: tuple[str, ...] = REFERENCE_MODELS  # layer widths; the homework's 571-param trio
    depths: tuple[PosInt, ...] = ()  # if set: hidden layers per model, widths solved for the budget
    param_budget: PosInt = 571  # parameters per model when depths is set (matched within 2%)
    activation: Activation = "relu"  # hidden activation
    n_points: Annotated[int, Bound(ge=2)] = 256  # training points, evenly spaced on the domain
    seeds: PosInt = 3  # training runs per model, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i
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
        "train.epochs": 20,
        "train.eval_every_epochs": 5,
    },
    "full": {"seeds": 5, "train.epochs": 20000, "train.lr": 1e-3, "train.eval_every_epochs": 50},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    models = [
        {
            "label": f"{len(w) - 2} hidden ({'-'.join(map(str, w))})",
            "widths": w,
            "depth": len(w) - 2,
            "params": mlp_param_count(w, cfg.activation),
        }
        for w in cfg.model_widths()
    ]
    curves, predictions, truth, finals = [], [], [], []
    for fname in cfg.functions:
        data = ctx.function(fname, cfg.n_points)
        x_plot = data.x_test  # (n_test, 1) finer grid for drawing
        truth += [
            {"function": fname, "x": x, "y": y}
            for x, y in zip(x_plot[:, 0].tolist(), data.y_test[:, 0].tolist(), strict=True)
        ]
        for m in models:
            pop = mlp_population(m["widths"], cfg.activation, cfg.seed, cfg.seeds, ctx.device)
            hist = ctx.train(f"{fname}-{m['depth']}h", pop, data, cfg.train)
            tag = {"function": fname, "model": m["label"]}
            curves += [
                {**tag, "seed": r["seed"], "epoch": r["epoch"], "train_loss": r["train_loss"]}
                for r in hist.epoch_records()
            ]
            with torch.no_grad():
                pop.train(False)
                y_hat = pop.forward(x_plot, shared=True)[..., 0].cpu()  # (K, n_test)
            for k, seed in enumerate(pop.seeds):
                predictions += [
                    {**tag, "seed": seed, "x": x, "y": y}
                    for x, y in zip(x_plot[:, 0].tolist(), y_hat[k].tolist(), strict=True)
                ]
            finals += [
                {**tag, "depth": m["depth"], "params": m["params"], **final}
                for final in hist.final_records()
            ]
    return {
        "models": models,
        "functions": [
            {"name": f, "formula": FUNCTIONS[f].formula, "domain": list(FUNCTIONS[f].domain)}
            for f in cfg.functions
        ],
        "curves": curves,
        "predictions": predictions,
        "truth": truth,
        "final": finals,
        "seeds": pop.seeds,
    }


def figures(results: dict) -> dict:
    figs = {}
    labels = [m["label"] for m in results["models"]]
    params = {m["label"]: m["params"] for m in results["models"]}
    for f in results["functions"]:
        name = f["name"]
        fig, ax = new_figure()
        by_model = group_rows([r for r in results["curves"] if r["function"] == name], "model")
        for i, label in enumerate(labels):
            xs, runs = series(by_model[(label,)], "epoch", "train_loss")
            mean_band(ax, xs, runs, f"{label}, {params[label]} params", COLORS[i], log=True)
        ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel="training loss (MSE)", title=f"Training loss: {f['formula']}")
        ax.legend(fontsize=8)
        figs[f"loss-{name}"] = fig

        fig, ax = new_figure()
        truth = [r for r in results["truth"] if r["function"] == name]
        ax.plot([r["x"] for r in truth], [r["y"] for r in truth], color="black", lw=2.5,
                label="ground truth", alpha=0.8)  # fmt: skip
        by_model = group_rows([r for r in results["predictions"] if r["function"] == name], "model")
        loss_of = {
            (r["model"], r["seed"]): r["train_loss"]
            for r in results["final"]
            if r["function"] == name
        }
        for i, label in enumerate(labels):
            seeds = group_rows(by_model[(label,)], "seed")
            best = min(seeds, key=lambda s: loss_of[(label, s[0])])
            for seed, rows in seeds.items():
                is_best = seed == best
                ax.plot(
                    [r["x"] for r in rows],
                    [r["y"] for r in rows],
                    color=COLORS[i],
                    lw=1.5 if is_best else 0.7,
                    alpha=1.0 if is_best else 0.35,
                    label=f"{label}: best of n={len(seeds)} seeds" if is_best else None,
                )
        ax.set(xlabel="x", ylabel="y", title=f"Fits of {f['formula']} (thin: other seeds)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
        figs[f"fit-{name}"] = fig
    return figs


def _final_by(results: dict) -> dict[tuple, tuple[float, float]]:
    """(function, model) -> (median, best) final training loss over seeds."""
    out = {}
    for key, rows in group_rows(results["final"], "function", "model").items():
        losses = [r["train_loss"] for r in rows if r["train_loss"] is not None]
        out[key] = (float(np.median(losses)), float(min(losses)))
    return out


def notes(results: dict) -> Notes:
    finals = _final_by(results)
    summary = {
        f"{fname}: final train loss, {label}, median / best": [median, best]
        for (fname, label), (median, best) in finals.items()
    }
    depth = {m["label"]: m["depth"] for m in results["models"]}
    params = [m["params"] for m in results["models"]]
    lines = [
        f"All models have {min(params)}-{max(params)} parameters "
        f"(spread {100 * (max(params) - min(params)) / max(params):.1f}%)."
    ]
    n = len(results["seeds"])
    for f in results["functions"]:
        rows = sorted(
            ((label, v) for (fn, label), v in finals.items() if fn == f["name"]),
            key=lambda kv: kv[1][0],
        )
        best, worst = rows[0], rows[-1]
        parts = ", ".join(
            f"{depth[label]}-hidden-layer {sci(med)} (best seed {sci(low)})"
            for label, (med, low) in rows
        )
        best_seed = min(rows, key=lambda kv: kv[1][1])
        lines.append(
            f"{f['formula']}: median final training loss over {n} seeds: {parts}. By the "
            f"median the {depth[best[0]]}-hidden-layer model fits best, "
            f"{worst[1][0] / max(best[1][0], 1e-300):.1f}x lower than the "
            f"{depth[worst[0]]}-hidden-layer model; the single best run is a "
            f"{depth[best_seed[0]]}-hidden-layer model."
        )
    lines += diverged_lines(results["final"])
    return Notes(summary, lines)


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
        **{
            f"loss-{n}": f"training loss per epoch (log scale) of every model on {f.formula}; "
            "line = geometric mean over seeds, band = min-max over seeds"
            for n, f in FUNCTIONS.items()
        },
        **{
            f"fit-{n}": f"ground truth {f.formula} and each model's prediction: its best seed "
            "bold, other seeds thin"
            for n, f in FUNCTIONS.items()
        },
    },
    quick_minutes=0.4,
    full_differs="3000 epochs and 3 seeds instead of the homework's 20 000 epochs.",
)

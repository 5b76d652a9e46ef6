"""HW1-1 deep vs shallow: fit 1-D functions with models of equal parameter count.

Protocol: for each target function and each model (same number of parameters, different
depth), train a population of seeds on evenly spaced points, record the training loss,
and compare the final fits. The homework's reference trio has 571-572 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlprobe.data import FUNCTIONS, function_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import (
    check_common,
    diverged_lines,
    group_rows,
    model_seeds,
    parse_widths,
    require,
    sci,
    series,
)
from dlprobe.experiments.plotting import COLORS, mean_band, new_figure
from dlprobe.models import MLP, mlp_param_count, mlp_widths_for_budget
from dlprobe.train import Population, TrainConfig

REFERENCE_MODELS = ("1-5-10-10-10-10-10-5-1", "1-10-18-15-4-1", "1-190-1")


@dataclass(frozen=True)
class Config:
    functions: tuple[str, ...] = ("sinc", "sgn-sin")  # target functions (dlprobe datasets)
    models: tuple[str, ...] = REFERENCE_MODELS  # layer widths; the homework's 571-param trio
    depths: tuple[int, ...] = ()  # if set: hidden layers per model, widths solved for the budget
    param_budget: int = 571  # parameters per model when depths is set (matched within 2%)
    activation: str = "relu"  # hidden activation
    n_points: int = 256  # training points, evenly spaced on the function's domain
    seeds: int = 3  # training runs per model, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer
    lr: float = 3e-3  # learning rate
    epochs: int = 3000  # full passes over the points
    batch_size: int = 0  # examples per step; 0 = all points (full batch)
    eval_every_epochs: int = 10  # loss-curve resolution, in epochs

    def validate(self) -> None:
        check_common(self)
        for f in self.functions:
            require(f in FUNCTIONS, f"unknown function {f!r}; valid names: {', '.join(FUNCTIONS)}")
        require(len(self.functions) >= 1, "give at least one function")
        require(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        require(
            self.batch_size <= self.n_points,
            f"batch_size must be <= n_points ({self.n_points}), got {self.batch_size}",
        )
        self.model_widths()

    def model_widths(self) -> list[list[int]]:
        if self.depths:
            return [
                mlp_widths_for_budget(1, 1, d, self.param_budget, self.activation)
                for d in self.depths
            ]
        require(len(self.models) >= 1, "give at least one model")
        return [parse_widths(m) for m in self.models]


PROFILES = {
    "smoke": Config(
        functions=("sinc",),
        models=("1-4-4-1", "1-9-1"),
        n_points=32,
        seeds=2,
        epochs=20,
        eval_every_epochs=5,
    ),
    "quick": Config(),
    "full": Config(seeds=5, epochs=20000, lr=1e-3, eval_every_epochs=50),
}


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    widths = cfg.model_widths()
    models = [
        {
            "label": f"{len(w) - 2} hidden ({'-'.join(map(str, w))})",
            "widths": w,
            "depth": len(w) - 2,
            "params": mlp_param_count(w, cfg.activation),
        }
        for w in widths
    ]
    seeds = model_seeds(cfg.seed, cfg.seeds)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.eval_every_epochs,
    )
    curves, predictions, truth, finals = [], [], [], []
    for fname in cfg.functions:
        data = function_dataset(fname, cfg.n_points).to(run_dir.device)
        x_plot = data.x_test  # (n_test, 1) finer grid for drawing
        truth += [
            {"function": fname, "x": float(x), "y": float(y)}
            for x, y in zip(x_plot[:, 0].tolist(), data.y_test[:, 0].tolist(), strict=True)
        ]
        for m in models:
            pop = Population(lambda w=m["widths"]: MLP(w, cfg.activation), seeds, run_dir.device)
            hist = run_dir.train(f"{fname}-{m['depth']}h", pop, data, train_cfg)
            for row in hist.epoch_records():
                curves.append(
                    {
                        "function": fname,
                        "model": m["label"],
                        "seed": row["seed"],
                        "epoch": row["epoch"],
                        "train_loss": row["train_loss"],
                    }
                )
            with torch.no_grad():
                pop.train(False)
                y_hat = pop.forward(x_plot, shared=True)[..., 0].cpu()  # (K, n_test)
            for k, seed in enumerate(seeds):
                predictions += [
                    {
                        "function": fname,
                        "model": m["label"],
                        "seed": seed,
                        "x": float(x),
                        "y": float(y),
                    }
                    for x, y in zip(x_plot[:, 0].tolist(), y_hat[k].tolist(), strict=True)
                ]
            finals += [
                {
                    "function": fname,
                    "model": m["label"],
                    "depth": m["depth"],
                    "params": m["params"],
                    **final,
                }
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
        "seeds": seeds,
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
        ax.plot(
            [r["x"] for r in truth],
            [r["y"] for r in truth],
            color="black",
            lw=2.5,
            label="ground truth",
            alpha=0.8,
        )
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


def summarize(results: dict) -> dict:
    out = {}
    for (fname, label), (median, best) in _final_by(results).items():
        out[f"{fname}: final train loss, {label}, median / best"] = [median, best]
    return out


def observations(results: dict) -> list[str]:
    lines = []
    depth = {m["label"]: m["depth"] for m in results["models"]}
    params = [m["params"] for m in results["models"]]
    lines.append(
        f"All models have {min(params)}-{max(params)} parameters "
        f"(spread {100 * (max(params) - min(params)) / max(params):.1f}%)."
    )
    finals = _final_by(results)
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
    return lines + diverged_lines(results["final"])


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    return [
        (
            "models",
            "; ".join(
                f"MLP {'-'.join(map(str, m['widths']))} ({m['params']} params)"
                for m in results["models"]
            ),
        ),
        ("activation", cfg.activation),
        (
            "functions",
            "; ".join(
                f"{f['formula']} on [{f['domain'][0]:g}, {f['domain'][1]:g}]"
                for f in results["functions"]
            ),
        ),
        ("training points", f"{cfg.n_points}, evenly spaced"),
        (
            "optimizer",
            f"{cfg.optimizer}, lr {cfg.lr:g}, "
            f"batch {'full' if cfg.batch_size == 0 else cfg.batch_size}",
        ),
        ("epochs", str(cfg.epochs)),
        (
            "seeds",
            f"{cfg.seeds} per model (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}), "
            "trained as one population",
        ),
    ]


EXPERIMENT = Experiment(
    id="simulate-function",
    homework="HW1-1",
    title="Deep vs shallow on simulated functions",
    question="With the same number of parameters, do deeper networks fit a non-linear "
    "1-D function better than shallow ones?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
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

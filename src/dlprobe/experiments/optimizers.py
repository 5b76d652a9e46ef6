"""Optimizers: SGD, momentum, Nesterov and the adaptive ones on one task and on 2-D surfaces.

Protocol: every optimizer trains the same MLP from the same seeds (weights and minibatch
order), epochs and batch size at each lr of one grid (train.lr times lr_factors); the lr
of best mean validation accuracy (a held-out part of the training set) is selected and
the untouched test split reports it. train.optimizer at that lr trains again with warm-up,
step, cosine and warm-up + cosine schedules (the lecture's RAdam / warm-up point). Exact:
every optimizer (torch.optim on a 2-vector) from one start for the same steps, at the lr
of a grid with the lowest final value, on a rotated quadratic of condition number 100 and
on Rosenbrock, paths drawn over the contours (the lecture's picture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Annotated

import numpy as np

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    column,
    data_record,
    fidelity_row,
    group_rows,
    mean_std,
    mlp_population,
    n_train_of,
    new_figure,
    one_of,
    require,
    sci,
)
from dlprobe.experiments.kit.lr_grid import (
    at_selected,
    draw_curves,
    draw_lr_grid,
    select_lr,
    train_rows,
    validation_split,
)
from dlprobe.experiments.kit.plotting import log_scale_if_positive
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.surfaces2d import (
    grid_values,
    optimizer_paths,
    paths_figure,
    rosenbrock,
    rotated_quadratic,
)
from dlprobe.train import OPTIMIZERS, TrainConfig, lr_factor

VARIANTS = ("constant", "warm-up", "step decay", "cosine", "warm-up + cosine")
ADAPTIVE = ("adagrad", "rmsprop", "adam", "nadam", "adamax", "adamw")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 0  # training examples used (0: all), a seeded subset
    validation_fraction: Annotated[float, Bound(gt=0, lt=1)] = 0.2  # of them held out for lr
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden widths of the MLP
    activation: Activation = "relu"  # hidden activation
    optimizers: tuple[one_of(OPTIMIZERS, "optimizer"), ...] = OPTIMIZERS  # compared optimizers
    # lr grid of every optimizer: train.lr times these
    lr_factors: tuple[PosFloat, ...] = (0.1, 1.0, 10.0)
    seeds: PosInt = 3  # models per (optimizer, lr), trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also draws the validation split
    warmup_epochs: PosFloat = 2.0  # linear warm-up of the warm-up variants, in epochs
    condition_number: Annotated[float, Bound(ge=1)] = 100.0  # of the 2-D quadratic
    surface_steps: PosInt = 200  # optimizer steps on each 2-D surface
    surface_lrs: tuple[PosFloat, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)  # grid
    grid_points: Annotated[int, Bound(ge=10)] = 120  # contour grid points per axis
    # shared budget (epochs, batch, momentum) at constant lr; train.optimizer gets the
    # schedule variants (step decay every train.step_every_epochs by train.step_gamma)
    train: TrainConfig = TrainConfig(lr=1e-2, epochs=10, batch_size=128, step_every_epochs=4)

    def check(self) -> None:
        require(len(self.optimizers) >= 2, "give at least two optimizers to compare")
        require(len(set(self.lr_factors)) == len(self.lr_factors), "lr_factors must differ")
        require(self.train.optimizer in self.optimizers, "train.optimizer must be compared too")
        require(
            self.train.schedule == "constant" and self.train.warmup_epochs == 0,
            "optimizers are compared at a constant lr: leave train.schedule constant and "
            "train.warmup_epochs 0 (schedules are the variants)",
        )
        require(self.warmup_epochs < self.train.epochs, "warmup_epochs must be < train.epochs")
        step = self.train.step_every_epochs
        require(step < self.train.epochs, f"train.step_every_epochs must be < train.epochs: {step}")
        n = n_train_of(self.dataset, self.train_subset)
        require(n * (1 - self.validation_fraction) >= 2, "too few examples left to train on")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)


# fmt: off
PROFILES = {
    "smoke": {"optimizers": ("sgd", "adam"), "lr_factors": (1.0, 10.0), "seeds": 2,
              "hidden": (16,), "train_subset": 300, "train.epochs": 3,
              "train.step_every_epochs": 2, "warmup_epochs": 1.0, "surface_steps": 30,
              "surface_lrs": (0.01, 0.1), "grid_points": 30},
    "full": {"dataset": "mnist", "seeds": 5, "hidden": (256, 256), "train.epochs": 30,
             "train.batch_size": 64, "train.step_every_epochs": 10, "surface_steps": 1000,
             "lr_factors": (0.01, 0.1, 1.0, 10.0, 100.0), "grid_points": 200},
}
# fmt: on


def _variant(tc: TrainConfig, variant: str, warmup: float) -> tuple[TrainConfig, str]:
    """The variant's training and stage key (constant: the grid's own training)."""
    schedule = {"step decay": "step", "cosine": "cosine", "warm-up + cosine": "cosine"}
    warm = warmup if variant.startswith("warm-up") else 0.0
    tc = replace(tc, schedule=schedule.get(variant, "constant"), warmup_epochs=warm)
    name = "" if variant == "constant" else variant.replace(" ", "") + "-"
    return tc, f"{tc.optimizer}-{name}lr{tc.lr:g}"


def _arm(cfg: Config, ctx: RunContext, fit, data, key: str, tc: TrainConfig, tag: dict):
    widths = [fit.input_dim, *cfg.hidden, fit.output_dim]
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    return train_rows(ctx, key, pop, fit, data, tc, tag)


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, seed=cfg.seed)
    fit = validation_split(data, cfg.validation_fraction, cfg.seed)
    grid, curves, selected = [], [], {}
    for opt in cfg.optimizers:
        rows = []
        for factor in cfg.lr_factors:
            tc = replace(cfg.train, optimizer=opt, lr=cfg.train.lr * factor)
            tag = {"optimizer": opt, "lr": tc.lr}
            f, c = _arm(cfg, ctx, fit, data, f"{opt}-lr{tc.lr:g}", tc, tag)
            rows, curves = rows + f, curves + c
        grid += rows
        selected[opt] = select_lr(rows)
    base = cfg.train.optimizer
    lr = selected[base] or cfg.train.lr  # every lr had a diverged seed: the grid's centre
    variants, variant_curves, schedules = [], [], []
    for variant in VARIANTS:
        tc, key = _variant(replace(cfg.train, lr=lr), variant, cfg.warmup_epochs)
        tag = {"variant": variant, "optimizer": base, "lr": lr}
        f, c = _arm(cfg, ctx, fit, data, key, tc, tag)
        variants, variant_curves = variants + f, variant_curves + c
        schedules += [
            {"variant": variant, "epoch": float(e), "lr": lr * lr_factor(tc, float(e))}
            for e in np.linspace(0, cfg.train.epochs, 20 * cfg.train.epochs + 1)
        ]
    return {
        "data": {**data_record(data), "n_fit": fit.n_train, "n_val": fit.n_test},
        "grid": grid, "curves": curves, "selected": selected,
        "variant_lr": lr, "variant_lr_selected": selected[base] is not None,
        "variants": variants, "variant_curves": variant_curves, "schedules": schedules,
        "surfaces": [{**optimizer_paths(sf, cfg.optimizers, cfg.surface_lrs, cfg.surface_steps,
                                        cfg.train.momentum),
                      "grid": grid_values(sf.fn, sf.box, cfg.grid_points)}
                     for sf in (rotated_quadratic(cfg.condition_number), rosenbrock())],
        "budget": {"epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size,
                   "seeds": cfg.seeds, "lrs": sorted({r["lr"] for r in grid}),
                   "surface_steps": cfg.surface_steps, "hidden": list(cfg.hidden),
                   "weight_decay": cfg.train.weight_decay},
    }  # fmt: skip


def figures(results: dict) -> dict:
    fig, axes = new_figure(2, 1, width=5.5)
    draw_lr_grid(axes, results["grid"], results["selected"], "optimizer")
    log_scale_if_positive(axes[1], column(results["grid"], "train_loss"))
    n = results["budget"]["seeds"]
    axes[0].set_title(f"mean, min-max over n={n} seeds; ring = selected lr", fontsize=9)
    figs = {"lr-grid": fig}
    fig, axes = new_figure(2, 1, width=5.5)
    sel = at_selected(results["curves"], results["selected"], "optimizer")
    draw_curves(axes, {f"{o} lr {results['selected'][o]:g}": rs for o, rs in sel.items()}, "CE")
    axes[0].set_title(f"each optimizer at its selected lr (n={n} seeds each)", fontsize=9)
    figs["curves"] = fig
    for s in results["surfaces"]:
        title = f"{s['formula']}: {results['budget']['surface_steps']} steps from the dot"
        figs[f"paths-{s['name']}"] = paths_figure(s, title)
    fig, axes = new_figure(2, 1, width=5.5)
    draw_curves(
        axes, {v: rs for (v,), rs in group_rows(results["variant_curves"], "variant").items()}, "CE"
    )
    opt = results["variants"][0]["optimizer"]
    axes[0].set_title(f"{opt} at lr {results['variant_lr']:g} (n={n} seeds each)", fontsize=9)
    ax = axes[0].inset_axes([0.62, 0.62, 0.36, 0.34])
    for i, rs in enumerate(group_rows(results["schedules"], "variant").values()):
        ax.plot([r["epoch"] for r in rs], [r["lr"] for r in rs], color=COLORS[i % 10], lw=1)
    ax.tick_params(labelsize=6)  # the inset: lr by epoch of each variant
    figs["schedules"] = fig
    return figs


def _num(v, missing: float = math.nan) -> float:  # results.json holds NaN as null
    return missing if v is None or not math.isfinite(v) else v


def _reached(results: dict) -> dict[str, dict]:
    """Per optimizer at its selected lr: mean and std of what its seeds reached."""
    keys = ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy")
    return {
        opt: {"lr": results["selected"][opt], "n": len(rs),
              **{k: mean_std(r[k] for r in rs) for k in keys}}
        for opt, rs in at_selected(results["grid"], results["selected"], "optimizer").items()
    }  # fmt: skip


def _network_lines(results: dict, reached: dict) -> list[str]:
    b, d, sel = results["budget"], results["data"], results["selected"]
    adamw = " (so adamw is adam)" if b["weight_decay"] == 0 else ""
    lines = [
        f"Held equal: the MLP {d['name']}-{'-'.join(map(str, b['hidden']))}, n={b['seeds']} "
        f"seeds (initial weights and minibatch order), {b['epochs']} epochs at batch "
        f"{b['batch_size']}, weight decay {b['weight_decay']:g}{adamw}, constant lr; each "
        f"lr is the one of {', '.join(f'{lr:g}' for lr in b['lrs'])} with the best mean "
        f"accuracy on {d['n_val']} held-out training examples (trained on {d['n_fit']}); "
        f"test accuracy is on the untouched {d['n_test']}-example test split."
    ]
    order = sorted(reached, key=lambda o: reached[o]["train_loss"][0])
    if order:
        each = [f"{o} {sci(reached[o]['train_loss'][0])} ± {sci(reached[o]['train_loss'][1])}"
                f" / {reached[o]['test_accuracy'][0]:.3f}" for o in order]  # fmt: skip
        best = max(order, key=lambda o: reached[o]["test_accuracy"][0])
        lines.append(f"At the selected lr, final training loss (mean ± std) / test accuracy: "
                     f"{', '.join(each)}; lowest loss {order[0]}, best test accuracy {best}.")  # fmt: skip
    lrs = b["lrs"]
    edge = [f"{o} ({'largest' if lr == lrs[-1] else 'smallest'})"
            for o, lr in sel.items() if lr in (lrs[0], lrs[-1])]  # fmt: skip
    if edge and len(lrs) > 1:
        lines.append(f"Selected lr at the edge of the grid, a wider grid might do better: "
                     f"{', '.join(edge)}.")  # fmt: skip
    if none := [o for o, lr in sel.items() if lr is None]:
        lines.append(f"Every lr had a diverged seed, left out: {', '.join(none)}.")
    bad = "were frozen; an lr with one is not eligible"
    return lines + diverged_lines(results["grid"], bad, ("optimizer", "lr"))


def _surface_lines(results: dict) -> list[str]:
    lines = []
    for s in results["surfaces"]:
        ps = sorted(s["paths"], key=lambda p: _num(p["final_distance"], math.inf))
        each = ", ".join(f"{p['optimizer']} {sci(p['final_distance'])}" for p in ps)
        lines.append(f"{s['formula']}, {results['budget']['surface_steps']} steps from "
                     f"{s['start']}, each optimizer at its best lr (nan: diverged at every lr): "
                     f"distance to the minimum {each}.")  # fmt: skip
    return lines


def _variant_lines(results: dict) -> tuple[list[str], dict]:
    v = {name: mean_std(r["train_loss"] for r in rs)
         for (name,), rs in group_rows(results["variants"], "variant").items()}  # fmt: skip
    origin = "its selected lr" if results["variant_lr_selected"] else "train.lr (none selected)"
    each = ", ".join(f"{name} {sci(m)}" for name, (m, _) in v.items())
    text = (f"{results['variants'][0]['optimizer']} at {origin} {results['variant_lr']:g}, final "
            f"training loss by schedule (mean over n={results['budget']['seeds']}): {each}.")  # fmt: skip
    return [text, *diverged_lines(results["variants"], keys=("variant",))], v


def _fidelity(results: dict, reached: dict, variants: dict) -> list[dict]:
    rows, steps = [], results["budget"]["surface_steps"]
    quad = {p["optimizer"]: _num(p["final_distance"]) for p in results["surfaces"][0]["paths"]}
    adaptive = [o for o in ADAPTIVE if o in quad and math.isfinite(quad[o])]
    if "sgd" in quad and adaptive:
        best = min(adaptive, key=quad.get)
        measured = f"distance after {steps} steps: sgd {sci(quad['sgd'])}, {best} {sci(quad[best])}"
        rows.append(fidelity_row(
            "one lr cannot suit both directions of an ill-conditioned surface; a per-"
            "parameter (adaptive) lr gets closer to the minimum",
            "L6: GD oscillates or crawls on an elongated convex surface; Adagrad gets there",
            measured, quad[best] < quad["sgd"]))  # fmt: skip
    if "sgd" in reached and "adam" in reached:
        s, a = reached["sgd"]["train_loss"][0], reached["adam"]["train_loss"][0]
        rows.append(fidelity_row(
            "Adam (RMSProp + momentum) trains a network faster than plain SGD",
            "L6: Adam, the usual adaptive optimizer",
            f"final train loss at the selected lrs: adam {sci(a)}, sgd {sci(s)}", a < s))  # fmt: skip
    c, w = variants.get("constant", (math.nan,))[0], variants.get("warm-up", (math.nan,))[0]
    why = "at a tuned lr there is no early instability for warm-up to remove"
    why = "a variant had no seed without divergence" if math.isnan(c + w) else why
    rows.append(fidelity_row(
        "warm-up stabilises an adaptive optimizer's early steps (RAdam)",
        "L6: warm-up, then decay; RAdam (Liu et al. 2019)",
        f"final train loss: warm-up {sci(w)}, constant {sci(c)}", w <= c, why))  # fmt: skip
    return rows


def notes(results: dict) -> Notes:
    reached = _reached(results)
    variant_lines, variants = _variant_lines(results)
    summary = {f"{o}: final train loss / test accuracy (means)":
               [r["train_loss"][0], r["test_accuracy"][0]] for o, r in reached.items()} | {
        f"{s['name']}: {p['optimizer']} distance to minimum": p["final_distance"]
        for s in results["surfaces"] for p in s["paths"]}  # fmt: skip
    table = [
        {"optimizer": o, "lr": r["lr"], "n": r["n"],
         **{k: f"{r[k][0]:.4g} ± {r[k][1]:.2g}"
            for k in ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy")}}
        for o, r in reached.items()
    ]  # fmt: skip
    return Notes(
        summary=summary,
        observations=_network_lines(results, reached) + _surface_lines(results) + variant_lines,
        tables=[("What each optimizer reached at its selected lr (mean ± std)", table)],
        fidelity=_fidelity(results, reached, variants),
    )


EXPERIMENT = Experiment(
    id="optimizers",
    item="Lecture L6",
    part="adaptive",
    rank=1,
    title="Optimizers and learning-rate schedules",
    question="With a fair lr each, how do SGD, momentum and the adaptive optimizers compare "
    "on a network and on an ill-conditioned surface, and what do warm-up and decay add?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "lr-grid": "final validation accuracy and train loss of every optimizer at every lr: "
        "mean, min-max bars over seeds (diverged ones left out); ring = the selected lr",
        "curves": "training loss (log) and validation accuracy per epoch of every optimizer "
        "at its selected lr: line = mean (geometric for the loss), band = min-max over seeds",
        "paths-quadratic": "paths of every optimizer from the same start over the contours "
        "of the rotated quadratic, each at its best lr of the grid; right: value per step",
        "paths-rosenbrock": "the same on Rosenbrock's valley",
        "schedules": "train.optimizer at its selected lr with warm-up, step and cosine decay: "
        "training loss and validation accuracy per epoch (mean, min-max band); inset: lr",
    },
    quick_minutes=0.7,  # 42 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="digits, a 64-64 MLP, 3 seeds, 10 epochs at batch 128, 3 lrs and 200 "
    "surface steps instead of MNIST, 256-256, 5 seeds, 30 epochs at 64, 5 lrs and 1000 steps.",
)

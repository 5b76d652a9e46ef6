"""HW1-3: flatness seen along the straight line between two trained models.

Protocol: train m1 and m2 from the same initialization with two approaches that differ in
one setting (batch size 64 vs 1024; learning rate 1e-3 vs 1e-2), then evaluate, without
any training, the models θ(α) = (1 - α)·θ1 + α·θ2 for α from -1 to 2 on the training and
the test set (Goodfellow et al. 2015; Keskar et al. 2017). Every model gets the same
number of optimizer steps (kit.batches says why): a batch of 1024 would otherwise get 16
times fewer updates than one of 64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated

import numpy as np

from dlprobe.data import Dataset
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
    check_batch_sizes,
    check_classifier_fits,
    group_rows,
    mean_band,
    mean_std,
    mlp_population,
    n_train_of,
    new_figure,
    require,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.batches import (
    Budget,
    check_budget_unset,
    length_table,
    model_and_data,
    model_and_data_table,
    split_metrics,
    train_config_for,
)
from dlprobe.experiments.kit.plotting import joint_legend, twin_axis
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.measure.interpolate import interpolate
from dlprobe.train import TrainConfig

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 2000  # training examples, a seeded subset (0: the whole set)
    hidden: tuple[PosInt, ...] = (100, 100)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    # pair 1: batch sizes of m1 and m2 (examples per step; 0 = full batch), both at train.lr
    batch_sizes: tuple[NonNegInt, NonNegInt] = (64, 1024)
    # pair 2: learning rates of m1 and m2, both at train.batch_size
    lrs: tuple[PosFloat, PosFloat] = (1e-3, 1e-2)
    budget: Budget = Budget(steps=3000)  # how long every model trains
    seeds: PosInt = 3  # pairs per comparison; m1 and m2 of pair k share their initialization
    seed: Seed = 0  # base seed: pair k starts from seed + k; also the training subset
    alpha_min: Annotated[float, Bound(le=0)] = -1.0  # first coefficient (α = 0 is m1)
    alpha_max: Annotated[float, Bound(ge=1)] = 2.0  # last coefficient (α = 1 is m2)
    n_alphas: Annotated[int, Bound(ge=2)] = 31  # evenly spaced alphas; 0, 0.5, 1 always added
    # optimizer of every model, lr of pair 1 and batch size of pair 2; the budget sets epochs
    train: TrainConfig = TrainConfig()

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        # the trained populations of all four settings stay in memory for the interpolation
        check_classifier_fits(self.dataset, self.hidden, self.activation, 4 * self.seeds)
        require(
            self.batch_sizes[0] != self.batch_sizes[1],
            f"pair 1 needs two different batch sizes, got {self.batch_sizes}",
        )
        require(self.lrs[0] != self.lrs[1], f"pair 2 needs two different lrs, got {self.lrs}")
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes((*self.batch_sizes, self.train.batch_size), n_train)
        check_budget_unset(self.train)

    def alphas(self) -> list[float]:
        grid = np.linspace(self.alpha_min, self.alpha_max, self.n_alphas)
        # Rounded so that 0 and 1 are exact: θ(0) must be m1 bit for bit.
        return sorted({round(float(a), 10) for a in grid} | {0.0, 0.5, 1.0})

    def pairs(self) -> list[dict]:
        """The two comparisons: name, label, and (batch size, lr) of m1 and of m2."""
        (b1, b2), (lr1, lr2) = self.batch_sizes, self.lrs
        b, lr = self.train.batch_size, self.train.lr
        return [
            {
                "pair": "batch size",
                "label": f"batch size {b1 or 'full'} vs {b2 or 'full'} (lr {lr:g})",
                "m1": (b1, lr),
                "m2": (b2, lr),
            },
            {
                "pair": "learning rate",
                "label": f"lr {lr1:g} vs {lr2:g} (batch size {b or 'full'})",
                "m1": (b, lr1),
                "m2": (b, lr2),
            },
        ]


PROFILES = {
    "smoke": {
        "train_subset": 300,
        "hidden": (16,),
        "batch_sizes": (16, 128),
        "train.batch_size": 16,
        "budget.steps": 40,
        "seeds": 2,
        "n_alphas": 7,
    },
    "full": {"dataset": "mnist", "train_subset": 0, "hidden": (256, 256), "budget.steps": 10000},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    setup = model_and_data(data, cfg.hidden, cfg.activation)
    evaluate = partial(split_metrics, data=data)  # model -> train/test loss and accuracy
    pairs = cfg.pairs()
    settings = list(dict.fromkeys(s for p in pairs for s in (p["m1"], p["m2"])))
    populations, trained = {}, []
    for b, lr in settings:
        populations[(b, lr)], records = train_setting(cfg, ctx, data, setup, b, lr, evaluate)
        trained += records
    curves, alphas = [], cfg.alphas()
    for p in pairs:
        pop1, pop2 = populations[p["m1"]], populations[p["m2"]]
        for k, seed in enumerate(pop1.seeds):
            for rec in interpolate(pop1.model(k), pop2.model(k), alphas, evaluate):
                curves.append({"pair": p["pair"], "seed": seed, **rec})
        ctx.log(f"  {p['label']}: {len(alphas)} alphas x {cfg.seeds} pairs evaluated")
    return {
        **setup,
        "pairs": [{**p, "m1": setting_key(*p["m1"]), "m2": setting_key(*p["m2"])} for p in pairs],
        "trained": trained,
        "curves": curves,
        "seeds": seeds_from(cfg.seed, cfg.seeds),
    }


def setting_key(batch_size: int, lr: float) -> str:
    """Stage key of one trained setting (also names its checkpoint file)."""
    return f"bs{batch_size or 'full'}-lr{lr:g}"


def train_setting(cfg: Config, ctx: RunContext, data: Dataset, setup: dict, b, lr, evaluate):
    """Train the population of one (batch size, lr); returns it and one record per model."""
    key = setting_key(b, lr)
    train_cfg = train_config_for(replace(cfg.train, lr=lr), b, data.n_train, cfg.budget)
    # Same seeds for every setting: m1 and m2 of pair k start from the same weights.
    pop = mlp_population(setup["model"]["widths"], cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    hist = ctx.train(key, pop, data, train_cfg)
    steps = train_cfg.epochs * train_cfg.steps_per_epoch(data.n_train)
    return pop, [
        {
            "setting": key,
            "batch_size": b or data.n_train,
            "lr": lr,
            "seed": seed,
            "epochs": train_cfg.epochs,
            "steps": steps,
            "diverged": k in hist.diverged,
            **evaluate(pop.model(k)),
        }
        for k, seed in enumerate(pop.seeds)
    ]


def figures(results: dict) -> dict:
    figs = {}
    for p in results["pairs"]:
        rows = [r for r in results["curves"] if r["pair"] == p["pair"]]
        fig, ax = new_figure(width=7.0, height=4.8)
        ax2 = twin_axis(ax)
        for i, split in enumerate(("train", "test")):
            alphas, runs = series(rows, "alpha", f"{split}_loss")  # (n_pairs, n_alphas)
            mean_band(ax, alphas, runs, f"{split} loss (left)", COLORS[i], log=True)
            alphas, runs = series(rows, "alpha", f"{split}_accuracy")
            mean_band(ax2, alphas, runs, f"{split} accuracy (right)", COLORS[i])
        for line in ax2.get_lines():
            line.set_linestyle("--")
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy loss (log scale, solid)")
        ax2.set_ylabel("accuracy (dashed)")
        ax2.set_ylim(0, 1.02)
        for alpha, name in ((0.0, "m1"), (1.0, "m2")):
            ax.axvline(alpha, color="gray", lw=0.8, ls=":")
            ax.annotate(name, xy=(alpha, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 3), textcoords="offset points", ha="center", fontsize=9,
                        color="dimgray")  # fmt: skip
        ax.set_xlabel("α   (θ(α) = (1 − α)·θ1 + α·θ2, no training in between)")
        ax.set_title(
            f"Interpolation: {p['label']}; n={len(results['seeds'])} pairs\n"
            f"m1 (α=0): {p['m1']},  m2 (α=1): {p['m2']}",
            fontsize=10,
            pad=16,
        )
        joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        figs[f"interpolation-{p['pair'].replace(' ', '-')}"] = fig
    return figs


def _value_at(results: dict, pair: str, metric: str, alpha: float) -> float:
    """Mean of ``metric`` over the pairs at one alpha."""
    return mean_std(
        r[metric] for r in results["curves"] if r["pair"] == pair and r["alpha"] == alpha
    )[0]


def barriers(results: dict, pair: str) -> list[dict]:
    """Per pair of models: the largest drop of the test (and training) accuracy below the
    straight line between the endpoints' accuracies for α in [0, 1] (and where), and the
    largest rise of the training loss above the line between the endpoints' losses.
    Pairs with a non-finite value on [0, 1] (a diverged model) are left out."""
    out, curves = [], [r for r in results["curves"] if r["pair"] == pair]
    for (seed,), rows in group_rows(curves, "seed").items():
        inside = [r for r in rows if 0 <= r["alpha"] <= 1]
        if any(r[m] is None for r in inside for m in METRICS):
            continue
        a0, a1 = inside[0], inside[-1]

        def line(metric, a, a0=a0, a1=a1):
            return (1 - a) * a0[metric] + a * a1[metric]

        acc = max(inside, key=lambda r: line("test_accuracy", r["alpha"]) - r["test_accuracy"])
        train = max(inside, key=lambda r: line("train_accuracy", r["alpha"]) - r["train_accuracy"])
        loss = max(inside, key=lambda r: r["train_loss"] - line("train_loss", r["alpha"]))
        out.append(
            {
                "seed": seed,
                "accuracy_barrier": line("test_accuracy", acc["alpha"]) - acc["test_accuracy"],
                "accuracy_barrier_alpha": acc["alpha"],
                "train_accuracy_barrier": line("train_accuracy", train["alpha"])
                - train["train_accuracy"],
                "loss_barrier": loss["train_loss"] - line("train_loss", loss["alpha"]),
                "loss_barrier_alpha": loss["alpha"],
            }
        )
    return out


def _summary(results: dict) -> dict:
    out = {}
    for p in results["pairs"]:
        name = p["pair"]
        for metric in ("train_loss", "test_accuracy"):
            out[f"{name}: {metric} at α = 0 / 0.5 / 1"] = [
                _value_at(results, name, metric, a) for a in (0.0, 0.5, 1.0)
            ]
        b = barriers(results, name)
        out[f"{name}: test-accuracy barrier"] = mean_std(r["accuracy_barrier"] for r in b)[0]
        out[f"{name}: training-accuracy barrier"] = mean_std(
            r["train_accuracy_barrier"] for r in b
        )[0]
        out[f"{name}: training-loss barrier"] = mean_std(r["loss_barrier"] for r in b)[0]
    return out


def notes(results: dict) -> Notes:
    lines = []
    n = len(results["seeds"])
    alphas = sorted({r["alpha"] for r in results["curves"]})
    for p in results["pairs"]:
        name = p["pair"]

        def at(metric, a, name=name):
            return _value_at(results, name, metric, a)

        b = barriers(results, name)
        acc_b, acc_sd = mean_std(r["accuracy_barrier"] for r in b)
        where = mean_std(r["accuracy_barrier_alpha"] for r in b)[0]
        train_b, train_sd = mean_std(r["train_accuracy_barrier"] for r in b)
        loss_b, loss_sd = mean_std(r["loss_barrier"] for r in b)
        lines.append(
            f"{p['label']} (m1 = {p['m1']} at α=0, m2 = {p['m2']} at α=1; n = {n} pairs): "
            f"training loss {at('train_loss', 0.0):.3g} / {at('train_loss', 0.5):.3g} / "
            f"{at('train_loss', 1.0):.3g} and test accuracy {at('test_accuracy', 0.0):.3f} / "
            f"{at('test_accuracy', 0.5):.3f} / {at('test_accuracy', 1.0):.3f} at α = 0 / 0.5 / 1. "
            f"The test-accuracy barrier (largest drop below the straight line between the "
            f"endpoints) is {acc_b:.3f} ± {acc_sd:.3f} at α ≈ {where:.2f} (training accuracy: "
            f"{train_b:.3f} ± {train_sd:.3f}); the training loss "
            f"rises up to {loss_b:.3g} ± {loss_sd:.2g} above its straight line."
        )
        # Equal distances from each endpoint along the line: which valley is flatter here.
        d = min(0.5, -alphas[0], alphas[-1] - 1)
        if d > 0:
            left = at("train_loss", round(-d, 10)) - at("train_loss", 0.0)
            right = at("train_loss", round(1 + d, 10)) - at("train_loss", 1.0)
            flatter = "m1" if left < right else "m2"
            lines.append(
                f"{p['label']}: stepping {d:g}·‖θ2 − θ1‖ beyond each endpoint raises the "
                f"training loss by {left:.3g} beyond m1 (α = {-d:g}) and by {right:.3g} beyond "
                f"m2 (α = {1 + d:g}): along this line {flatter} sits in the flatter valley."
            )
    lines += diverged_lines(results["trained"], "were frozen")
    grid = {"alphas": len(alphas), "from": alphas[0], "to": alphas[-1]}
    tables = [
        model_and_data_table(results),
        length_table(results["trained"], by="setting"),
        ("Interpolation coefficients α (each θ(α) evaluated as is, never trained)", [grid]),
    ]
    return Notes(_summary(results), lines, tables)


EXPERIMENT = Experiment(
    id="flatness-interpolation",
    item="HW1-3",
    part="hw1-3",
    rank=3,
    title="Flatness by interpolation between two trained models",
    question="Along the straight line between models trained with small and large batches "
    "(or small and large learning rates), how do training and test loss and accuracy change, "
    "and which minimum is flatter?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "interpolation-batch-size": "training and test cross-entropy (left axis, log scale, "
        "solid) and accuracy (right axis, dashed) of θ(α) = (1 − α)·θ1 + α·θ2, θ1 trained "
        "with the small and θ2 with the large batch; line = mean over pairs (geometric for "
        "the loss), band = min-max",
        "interpolation-learning-rate": "the same for θ1 trained with the small and θ2 with "
        "the large learning rate",
    },
    quick_minutes=0.4,
    full_differs="mnist1d (2000 training examples, so that batch size 64 also nears a "
    "minimum within the budget; MLP 40-100-100-10) and 3000 steps per model instead of MNIST.",
)

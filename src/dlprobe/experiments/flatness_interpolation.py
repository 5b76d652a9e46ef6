"""HW1-3: flatness seen along the straight line between two trained models.

Protocol: train m1 and m2 from independent initializations (one shared initialization puts
both in one valley and hides the barrier; ``shared_init`` shows it) with two approaches
that differ in one setting (batch size 64 vs 1024; learning rate 1e-3 vs 1e-2), each until
the same training-loss target (kit.batches says why), then evaluate, without any training,
θ(α) = (1 - α)·θ1 + α·θ2 for α from -1 to 2 on the training and the test set (Goodfellow
et al. 2015; Keskar et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
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
    batches,
    check_batch_sizes,
    check_classifier_fits,
    fidelity_row,
    group_rows,
    mean_band,
    mean_std,
    mlp_population,
    n_train_of,
    new_figure,
    no_data,
    require,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.plotting import joint_legend, twin_axis
from dlprobe.measure.interpolate import interpolate
from dlprobe.train import TrainConfig

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Config:
    # classification dataset (see `dlprobe datasets`); digits: MLPs reach ~0.97 test
    # accuracy there, the homework's MNIST regime (mnist1d MLPs overfit to ~0.5)
    dataset: DatasetName = "digits"
    train_subset: NonNegInt = 0  # training examples, a seeded subset (0: the whole set)
    hidden: tuple[PosInt, ...] = (100, 100)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    # pair 1: batch sizes of m1 and m2 (examples per step; 0 = full batch), both at train.lr
    batch_sizes: tuple[NonNegInt, NonNegInt] = (64, 1024)
    # pair 2: learning rates of m1 and m2, both at train.batch_size
    lrs: tuple[PosFloat, PosFloat] = (1e-3, 1e-2)
    budget: batches.Budget = batches.Budget()  # how long every model trains (one protocol)
    seeds: PosInt = 3  # pairs per comparison
    # m1 and m2 of pair k start from the same weights (seed + k), the old protocol, for
    # contrast; otherwise m2 starts from seed + seeds + k, independent of m1
    shared_init: bool = False
    seed: Seed = 0  # base seed: m1 of pair k starts from seed + k; also the training subset
    alpha_min: Annotated[float, Bound(le=0)] = -1.0  # first coefficient (α = 0 is m1)
    alpha_max: Annotated[float, Bound(ge=1)] = 2.0  # last coefficient (α = 1 is m2)
    n_alphas: Annotated[int, Bound(ge=2)] = 31  # evenly spaced alphas; 0, 0.5, 1 always added
    # optimizer of every model, lr of pair 1 and batch size of pair 2; the budget sets epochs
    train: TrainConfig = TrainConfig()

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        # the trained populations of all four settings stay in memory for the interpolation
        check_classifier_fits(self.dataset, self.hidden, self.activation, 4 * self.seeds)
        two = len(set(self.batch_sizes)) == len(set(self.lrs)) == 2
        require(two, f"each pair needs two settings, got {self.batch_sizes} and {self.lrs}")
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes((*self.batch_sizes, self.train.batch_size), n_train)
        batches.check_budget_unset(self.train)
        require(self.budget.protocol != "all", "give one budget protocol: two models compare")

    def alphas(self) -> list[float]:
        """The grid, with 0, 0.5, 1 and the points at equal distance d beyond each end."""
        grid = np.linspace(self.alpha_min, self.alpha_max, self.n_alphas)
        d = min(0.5, -self.alpha_min, self.alpha_max - 1)
        # Rounded so that 0 and 1 are exact: θ(0) must be m1 bit for bit.
        return sorted({round(float(a), 10) for a in (*grid, -d, 1 + d)} | {0.0, 0.5, 1.0})

    def pairs(self) -> list[dict]:
        """The two comparisons: name, label, and (batch size, lr, first seed) of m1 and m2."""
        (b1, b2), (lr1, lr2) = self.batch_sizes, self.lrs
        b, lr = self.train.batch_size, self.train.lr
        s1, s2 = self.seed, self.seed + (0 if self.shared_init else self.seeds)
        batch = f"batch size {b1 or 'full'} vs {b2 or 'full'} (lr {lr:g})"
        rate = f"lr {lr1:g} vs {lr2:g} (batch size {b or 'full'})"
        return [
            {"pair": "batch size", "label": batch, "m1": (b1, lr, s1), "m2": (b2, lr, s2)},
            {"pair": "learning rate", "label": rate, "m1": (b, lr1, s1), "m2": (b, lr2, s2)},
        ]


PROFILES = {
    "smoke": {"hidden": (16,), "budget.train_loss": 0.1, "seeds": 2, "n_alphas": 7},
    "full": {"dataset": "mnist", "hidden": (256, 256), "budget.max_epochs": 3000},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    setup, pairs = batches.model_and_data(data, cfg.hidden, cfg.activation), cfg.pairs()
    evaluate = partial(batches.split_metrics, data=data)  # model -> train/test loss and accuracy
    populations, trained = {}, []
    for setting in dict.fromkeys(s for p in pairs for s in (p["m1"], p["m2"])):
        (b, lr, first_seed), key = setting, setting_key(*setting)  # first_seed: the pop's seeds
        pop = mlp_population(
            setup["model"]["widths"], cfg.activation, first_seed, cfg.seeds, ctx.device
        )
        train = replace(cfg.train, lr=lr)
        records = batches.train_one(ctx, data, pop, train, b, cfg.budget, cfg.budget.protocol, key)
        trained += [
            {**r, "setting": key, "lr": lr, **evaluate(pop.model(k))} for k, r in enumerate(records)
        ]
        populations[setting] = pop
    curves, alphas = [], cfg.alphas()
    for p in pairs:
        pop1, pop2 = populations[p["m1"]], populations[p["m2"]]
        for k, (seed, seed2) in enumerate(zip(pop1.seeds, pop2.seeds, strict=True)):
            for rec in interpolate(pop1.model(k), pop2.model(k), alphas, evaluate):
                curves.append({"pair": p["pair"], "seed": seed, "m2_seed": seed2, **rec})
        ctx.log(f"  {p['label']}: {len(alphas)} alphas x {cfg.seeds} pairs evaluated")
    return {
        **setup,
        "budget": cfg.budget.record(),
        "shared_init": cfg.shared_init,
        "pairs": [{**p, "m1": setting_key(*p["m1"]), "m2": setting_key(*p["m2"])} for p in pairs],
        "trained": trained,
        "curves": curves,
        "seeds": seeds_from(cfg.seed, cfg.seeds),
    }


def setting_key(batch_size: int, lr: float, first_seed: int) -> str:
    """Stage key of one trained setting (also names its checkpoint file)."""
    return f"bs{batch_size or 'full'}-lr{lr:g}-seed{first_seed}"


def figures(results: dict) -> dict:
    figs = {}
    init = "one shared init" if results["shared_init"] else "independent inits"
    for p in results["pairs"]:
        seeds = {b["seed"] for b in barriers(results, p["pair"])}
        rows = [r for r in results["curves"] if r["pair"] == p["pair"] and r["seed"] in seeds]
        fig, ax = new_figure(width=7.0, height=4.8)
        figs[f"interpolation-{p['pair'].replace(' ', '-')}"] = fig
        if not rows:
            no_data(ax, "no pair had both endpoints at the target and finite")
            continue
        ax2 = twin_axis(ax)
        for i, split in enumerate(("train", "test")):
            alphas, runs = series(rows, "alpha", f"{split}_loss")  # (n_pairs, n_alphas)
            mean_band(ax, alphas, runs, f"{split} loss (left)", COLORS[i], log=True)
            alphas, runs = series(rows, "alpha", f"{split}_accuracy")
            mean_band(ax2, alphas, runs, f"{split} accuracy (right)", COLORS[i])
        for line in ax2.get_lines():
            line.set_linestyle("--")
        ax.set(yscale="log", ylabel="cross-entropy loss (log scale, solid)")
        ax2.set(ylabel="accuracy (dashed)", ylim=(0, 1.02))
        for alpha, name in ((0.0, "m1"), (1.0, "m2")):
            ax.axvline(alpha, color="gray", lw=0.8, ls=":")
            ax.annotate(name, xy=(alpha, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 3), textcoords="offset points", ha="center", fontsize=9,
                        color="dimgray")  # fmt: skip
        ax.set_xlabel("α   (θ(α) = (1 − α)·θ1 + α·θ2, no training in between)")
        ax.set_title(
            f"Interpolation: {p['label']}; n={len({r['seed'] for r in rows})} pairs, {init}\n"
            f"m1 (α=0): {p['m1']},  m2 (α=1): {p['m2']}",
            fontsize=10,
            pad=16,
        )
        joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return figs


def barriers(results: dict, pair: str) -> list[dict]:
    """Per pair whose endpoints both count (``batches.counts``) and stay finite on the line:
    the largest drop of the test accuracy below the straight line between the endpoints'
    accuracies for α in [0, 1] (and where), the largest rise of the training loss above
    its straight line, the training-loss rise at equal distance d beyond each endpoint (d =
    min(0.5, -α_min, α_max - 1); the flatter valley rises less), and the rows at α = 0, 0.5, 1."""
    out, alphas = [], sorted({r["alpha"] for r in results["curves"]})
    d = round(min(0.5, -alphas[0], alphas[-1] - 1), 10)
    ok = {(r["setting"], r["seed"]) for r in results["trained"] if batches.counts(r)}
    p = next(p for p in results["pairs"] if p["pair"] == pair)
    curves = [
        r
        for r in results["curves"]
        if r["pair"] == pair and (p["m1"], r["seed"]) in ok and (p["m2"], r["m2_seed"]) in ok
    ]
    for (seed,), rows in group_rows(curves, "seed").items():
        at = {r["alpha"]: r for r in rows}
        inside = [r for r in rows if 0 <= r["alpha"] <= 1]
        used = [*inside, at[-d], at[1 + d]] if d > 0 else inside
        if any(r[m] is None for r in used for m in METRICS):
            continue
        a0, a1 = at[0.0], at[1.0]

        def above(metric, sign, r, a0=a0, a1=a1):  # sign * (value - straight line) at r
            return sign * (r[metric] - (1 - r["alpha"]) * a0[metric] - r["alpha"] * a1[metric])

        acc = max(inside, key=partial(above, "test_accuracy", -1))
        out.append(
            {
                "seed": seed,
                "endpoint_loss": max(a0["train_loss"], a1["train_loss"]),
                "accuracy_barrier": above("test_accuracy", -1, acc),
                "accuracy_barrier_alpha": acc["alpha"],
                "loss_barrier": max(above("train_loss", 1, r) for r in inside),
                "distance": d,
                "rise_m1": at[-d]["train_loss"] - a0["train_loss"] if d > 0 else None,
                "rise_m2": at[1 + d]["train_loss"] - a1["train_loss"] if d > 0 else None,
                "at": [at[0.0], at[0.5], at[1.0]],
            }
        )
    return out


def notes(results: dict) -> Notes:
    alphas = sorted({r["alpha"] for r in results["curves"]})
    trained, budget = results["trained"], results["budget"]
    m1_seeds, m2_seeds = (sorted({r[k] for r in results["curves"]}) for k in ("seed", "m2_seed"))
    init = "the same initialization (shared_init: the old protocol, for contrast)"
    if not results["shared_init"]:
        init = f"independent initializations (m1 seeds {m1_seeds}, m2 seeds {m2_seeds})"
    lines = [
        f"Every model trains under {batches.protocol_label(budget['protocols'][0], budget)}: "
        f"{sum(r['status'] == 'fine' for r in trained)} of {len(trained)} met the target "
        f"(table below). m1 and m2 of each pair start from {init}.",
        *batches.left_out_lines(trained, "setting"),
    ]
    summary, fidelity = {}, []
    for p in results["pairs"]:
        pair_lines, numbers, rows = _pair(p, barriers(results, p["pair"]))
        lines, summary, fidelity = lines + pair_lines, summary | numbers, fidelity + rows
    fidelity.append(_barrier_row(results))
    fidelity.append(batches.standin_row(results, [r for r in trained if batches.counts(r)]))
    grid = {"alphas": len(alphas), "from": alphas[0], "to": alphas[-1]}
    tables = [
        batches.model_and_data_table(results),
        batches.reached_table(trained, "setting"),
        ("Interpolation coefficients α (each θ(α) evaluated as is, never trained)", [grid]),
    ]
    return Notes(summary, lines, tables, fidelity)


def _pair(p: dict, b: list[dict]) -> tuple[list[str], dict, list[dict]]:
    """The sentences, headline numbers and fidelity row (batch-size pair) of one comparison,
    from its ``barriers``."""
    if not b:
        return [f"{p['label']}: no pair has both endpoints counted."], {}, []
    (acc_b, acc_sd), (loss_b, loss_sd), (where, _) = (
        mean_std(r[m] for r in b)
        for m in ("accuracy_barrier", "loss_barrier", "accuracy_barrier_alpha")
    )
    loss, acc = ([mean_std(r["at"][i][m] for r in b)[0] for i in range(3)]
                 for m in ("train_loss", "test_accuracy"))  # fmt: skip
    lines = [
        f"{p['label']} (m1 = {p['m1']} at α=0, m2 = {p['m2']} at α=1; n = {len(b)} pairs): "
        f"training loss {loss[0]:.3g} / {loss[1]:.3g} / {loss[2]:.3g} and test accuracy "
        f"{acc[0]:.3f} / {acc[1]:.3f} / {acc[2]:.3f} at α = 0 / 0.5 / 1. The test-accuracy "
        f"barrier (largest drop below the straight line between the endpoints) is {acc_b:.3f} "
        f"± {acc_sd:.3f} at α ≈ {where:.2f}; the training loss rises up to {loss_b:.3g} ± "
        f"{loss_sd:.2g} above its straight line."
    ]
    numbers = {
        f"{p['pair']}: train_loss at α = 0 / 0.5 / 1": loss,
        f"{p['pair']}: test_accuracy at α = 0 / 0.5 / 1": acc,
        f"{p['pair']}: test-accuracy barrier": acc_b,
        f"{p['pair']}: training-loss barrier": loss_b,
    }
    d, n = b[0]["distance"], len(b)
    if d <= 0:
        return lines, numbers, []
    k = sum(r["rise_m1"] < r["rise_m2"] for r in b)
    lines.append(
        f"{p['label']}: stepping {d:g}·‖θ2 − θ1‖ beyond each endpoint raises the training "
        f"loss by {mean_std(r['rise_m1'] for r in b)[0]:.3g} beyond m1 (α = {-d:g}) and by "
        f"{mean_std(r['rise_m2'] for r in b)[0]:.3g} beyond m2 (α = {1 + d:g}) (means): "
        f"m1 sits in the flatter valley in {k} of {n} pairs."
    )
    flatter = fidelity_row(
        "the small-batch minimum is the flatter one (Keskar et al. 2017)",
        "loss rises more slowly beyond the small-batch model than the large-batch one",
        f"m1 (small batch) sits in the flatter valley in {k} of {n} pairs",
        k > n / 2,
        f"the large-batch model is flatter in {n - k} of {n} pairs here",
    )
    return lines, numbers, [flatter] if p["pair"] == "batch size" else []


def _barrier_row(results: dict) -> dict:
    """A barrier separates independent minima, not a shared init's (a barrier: the training
    loss rises above the straight line by more than the larger endpoint loss)."""
    b = [r for p in results["pairs"] for r in barriers(results, p["pair"])]
    high, shared = sum(r["loss_barrier"] > r["endpoint_loss"] for r in b), results["shared_init"]
    return fidelity_row(
        "models from one initialization sit in one valley (no barrier)"
        if shared
        else "independently initialized minima are separated by a loss barrier",
        "SPEC pitfall: a shared initialization makes the barrier vanish",
        f"training-loss barrier above the larger endpoint loss in {high} of {len(b)} pairs",
        (high == 0) if shared else (len(b) > 0 and high == len(b)),
        f"{high if shared else len(b) - high} of {len(b)} pairs go the other way",
    )


EXPERIMENT = Experiment(
    id="flatness-interpolation",
    item="HW1-3",
    part="hw1-3",
    rank=3,
    title="Flatness by interpolation between two trained models",
    question="Along the straight line between models trained with small and large batches (or "
    "learning rates), how do training and test loss and accuracy change; which is flatter?",
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
    quick_minutes=0.2,
    full_differs="scikit-learn digits, where MLPs reach MNIST's ~0.97 test accuracy (1347 "
    "training examples, MLP 64-100-100-10), instead of MNIST with 256-256 hidden units.",
)

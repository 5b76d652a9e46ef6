"""HW1-3 part 1: flatness seen along the straight line between two trained models.

Protocol: train m1 and m2 from the same initialization with two approaches that differ in
one setting (batch size 64 vs 1024; learning rate 1e-3 vs 1e-2), then evaluate, without
any training, the models theta(alpha) = (1 - alpha) theta1 + alpha theta2 for alpha from
-1 to 2 on the training and the test set (Goodfellow et al. 2015; Keskar et al. 2017).
Every model gets the same number of optimizer steps (see ``sensitivity`` for why steps and
not epochs): a batch of 1024 would otherwise get 16 times fewer updates than one of 64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlprobe.data import Dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.classification import (
    check_batch_sizes,
    check_dataset,
    data_setting,
    epochs_for_steps,
    load_classification,
    mlp_spec,
)
from dlprobe.experiments.common import (
    check_common,
    diverged_lines,
    group_rows,
    mean_std,
    model_seeds,
    require,
)
from dlprobe.experiments.plotting import COLORS, joint_legend, mean_band, new_figure, twin_axis
from dlprobe.measure.interpolate import classification_metrics, interpolate
from dlprobe.models import MLP, describe_model, mlp_param_count
from dlprobe.train import Population, TrainConfig

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    train_subset: int = 2000  # training examples (a seeded subset); 0 = the whole training set
    hidden: tuple[int, ...] = (100, 100)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation
    batch_sizes: tuple[int, int] = (64, 1024)  # pair 1: batch sizes of m1 and m2, at lr
    lr: float = 1e-3  # learning rate of both models of pair 1
    lrs: tuple[float, float] = (1e-3, 1e-2)  # pair 2: learning rates of m1 and m2, at batch_size
    batch_size: int = 64  # batch size of both models of pair 2 (examples per step)
    optimizer: str = "adam"  # optimizer of every model
    steps: int = 3000  # optimizer steps per model (rounded to whole epochs), same for all
    seeds: int = 3  # pairs per comparison; m1 and m2 of a pair share their initialization
    seed: int = 0  # base seed (initializations, batch order, training subset)
    alpha_min: float = -1.0  # first interpolation coefficient (alpha = 0 is m1)
    alpha_max: float = 2.0  # last interpolation coefficient (alpha = 1 is m2)
    n_alphas: int = 31  # evenly spaced alphas; 0, 0.5 and 1 are always added

    def validate(self) -> None:
        check_common(self)
        check_dataset(self)
        require(min(self.batch_sizes) >= 0, f"batch sizes must be >= 0, got {self.batch_sizes}")
        require(
            self.batch_sizes[0] != self.batch_sizes[1],
            f"pair 1 needs two different batch sizes, got {self.batch_sizes}",
        )
        require(min(self.lrs) > 0, f"learning rates must be > 0, got {self.lrs}")
        require(self.lrs[0] != self.lrs[1], f"pair 2 needs two different lrs, got {self.lrs}")
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(
            self.alpha_min <= 0 and self.alpha_max >= 1,
            f"the alpha range must contain [0, 1], got [{self.alpha_min}, {self.alpha_max}]",
        )
        require(self.n_alphas >= 2, f"n_alphas must be >= 2, got {self.n_alphas}")

    def alphas(self) -> list[float]:
        grid = np.linspace(self.alpha_min, self.alpha_max, self.n_alphas)
        # Rounded so that 0 and 1 are exact: theta(0) must be m1 bit for bit.
        return sorted({round(float(a), 10) for a in grid} | {0.0, 0.5, 1.0})

    def pairs(self) -> list[dict]:
        """The two comparisons: name, and (batch size, lr) of m1 and of m2."""
        b1, b2 = self.batch_sizes
        lr1, lr2 = self.lrs
        return [
            {
                "pair": "batch size",
                "label": f"batch size {b1 or 'full'} vs {b2 or 'full'} (lr {self.lr:g})",
                "m1": (b1, self.lr),
                "m2": (b2, self.lr),
            },
            {
                "pair": "learning rate",
                "label": f"lr {lr1:g} vs {lr2:g} (batch size {self.batch_size or 'full'})",
                "m1": (self.batch_size, lr1),
                "m2": (self.batch_size, lr2),
            },
        ]


PROFILES = {
    "smoke": Config(
        train_subset=300,
        hidden=(16,),
        batch_sizes=(16, 128),
        batch_size=16,
        steps=40,
        seeds=2,
        n_alphas=7,
    ),
    "quick": Config(),
    "full": Config(dataset="mnist", train_subset=0, hidden=(256, 256), steps=10000),
}


def setting_key(batch_size: int, lr: float) -> str:
    """Stage key of one trained setting (also names its checkpoint file)."""
    return f"bs{batch_size or 'full'}-lr{lr:g}"


def load_data(cfg: Config, device) -> Dataset:
    return load_classification(cfg.dataset, cfg.train_subset, cfg.seed, device)


def evaluator(data: Dataset):
    """``model -> {train_loss, train_accuracy, test_loss, test_accuracy}`` (no training)."""

    def evaluate(model) -> dict:
        train = classification_metrics(model, data.x_train, data.y_train)
        test = classification_metrics(model, data.x_test, data.y_test)
        return {
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
        }

    return evaluate


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_data(cfg, run_dir.device)
    pairs = cfg.pairs()
    settings_used = list(dict.fromkeys(s for p in pairs for s in (p["m1"], p["m2"])))
    check_batch_sizes([b for b, _ in settings_used], data.n_train)
    spec = mlp_spec(data, cfg.hidden, cfg.activation)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    evaluate = evaluator(data)

    populations, trained = {}, []
    for b, lr in settings_used:
        key = setting_key(b, lr)
        epochs = epochs_for_steps(cfg.steps, b, data.n_train)
        train_cfg = TrainConfig(
            optimizer=cfg.optimizer,
            lr=lr,
            epochs=epochs,
            batch_size=b,
            eval_every_epochs=epochs,  # the endpoints are evaluated below, like every alpha
        )
        # Same seeds for every setting: m1 and m2 of pair k start from the same weights.
        pop = Population(lambda: MLP(spec["widths"], cfg.activation), seeds, run_dir.device)
        hist = run_dir.train(key, pop, data, train_cfg)
        populations[(b, lr)] = pop
        for k, seed in enumerate(seeds):
            trained.append(
                {
                    "setting": key,
                    "batch_size": b or data.n_train,
                    "lr": lr,
                    "seed": seed,
                    "epochs": epochs,
                    "steps": epochs * train_cfg.steps_per_epoch(data.n_train),
                    "diverged": k in hist.diverged,
                    **evaluate(pop.model(k)),
                }
            )

    curves = []
    alphas = cfg.alphas()
    for p in pairs:
        pop1, pop2 = populations[p["m1"]], populations[p["m2"]]
        for k, seed in enumerate(seeds):
            for rec in interpolate(pop1.model(k), pop2.model(k), alphas, evaluate):
                curves.append({"pair": p["pair"], "seed": seed, **rec})
        run_dir.log(f"  {p['label']}: {len(alphas)} alphas x {len(seeds)} pairs evaluated")
    return {
        "model": spec,
        "model_params": mlp_param_count(spec["widths"], cfg.activation),
        "data": {"name": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "pairs": [
            {
                "pair": p["pair"],
                "label": p["label"],
                "m1": setting_key(*p["m1"]),
                "m2": setting_key(*p["m2"]),
            }
            for p in pairs
        ],
        "trained": trained,
        "curves": curves,
        "seeds": seeds,
    }


# -- figures and numbers -----------------------------------------------------------------


def _curve(results: dict, pair: str, metric: str) -> tuple[list[float], np.ndarray]:
    """Alphas and an array (n_pairs, n_alphas) of ``metric`` along the line."""
    by_seed = group_rows([r for r in results["curves"] if r["pair"] == pair], "seed")
    alphas = [r["alpha"] for r in next(iter(by_seed.values()))]
    return alphas, np.array([[r[metric] for r in rows] for rows in by_seed.values()], dtype=float)


def figures(results: dict) -> dict:
    figs = {}
    n = len(results["seeds"])
    for p in results["pairs"]:
        fig, ax = new_figure(width=7.0, height=4.8)
        ax2 = twin_axis(ax)
        for i, split in enumerate(("train", "test")):
            alphas, runs = _curve(results, p["pair"], f"{split}_loss")
            mean_band(ax, alphas, runs, f"{split} loss (left)", COLORS[i], log=True)
            alphas, runs = _curve(results, p["pair"], f"{split}_accuracy")
            mean_band(ax2, alphas, runs, f"{split} accuracy (right)", COLORS[i])
        for line in ax2.get_lines():
            line.set_linestyle("--")
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy loss (log scale, solid)")
        ax2.set_ylabel("accuracy (dashed)")
        ax2.set_ylim(0, 1.02)
        for alpha, name in ((0.0, "m1"), (1.0, "m2")):
            ax.axvline(alpha, color="gray", lw=0.8, ls=":")
            ax.annotate(
                name,
                xy=(alpha, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=9,
                color="dimgray",
            )
        ax.set_xlabel("α   (θ(α) = (1 − α)·θ1 + α·θ2, no training in between)")
        ax.set_title(
            f"Interpolation: {p['label']}; n={n} pairs\nm1 (α=0): {p['m1']},  m2 (α=1): {p['m2']}",
            fontsize=10,
            pad=16,
        )
        joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        figs[f"interpolation-{p['pair'].replace(' ', '-')}"] = fig
    return figs


def _value_at(results: dict, pair: str, metric: str, alpha: float) -> tuple[float, float]:
    return mean_std(
        r[metric] for r in results["curves"] if r["pair"] == pair and r["alpha"] == alpha
    )


def barriers(results: dict, pair: str) -> list[dict]:
    """Per pair of models: the largest drop of the test (and training) accuracy below the
    straight line between the endpoints' accuracies for alpha in [0, 1] (and where), and the
    largest rise of the training loss above the line between the endpoints' losses."""
    out = []
    by_seed = group_rows([r for r in results["curves"] if r["pair"] == pair], "seed")
    for seed, rows in by_seed.items():
        inside = [r for r in rows if 0 <= r["alpha"] <= 1]
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


def summarize(results: dict) -> dict:
    out = {}
    for p in results["pairs"]:
        name = p["pair"]
        for metric in ("train_loss", "test_accuracy"):
            out[f"{name}: {metric} at α = 0 / 0.5 / 1"] = [
                _value_at(results, name, metric, a)[0] for a in (0.0, 0.5, 1.0)
            ]
        b = barriers(results, name)
        out[f"{name}: test-accuracy barrier"] = mean_std(r["accuracy_barrier"] for r in b)[0]
        out[f"{name}: training-accuracy barrier"] = mean_std(
            r["train_accuracy_barrier"] for r in b
        )[0]
        out[f"{name}: training-loss barrier"] = mean_std(r["loss_barrier"] for r in b)[0]
    return out


def observations(results: dict) -> list[str]:
    lines = []
    n = len(results["seeds"])
    alphas = sorted({r["alpha"] for r in results["curves"]})
    for p in results["pairs"]:
        name = p["pair"]

        def at(metric, a, name=name):
            return _value_at(results, name, metric, a)[0]

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
    return lines + diverged_lines(results["trained"], "were frozen")


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d = results["model"], results["data"]
    trained = group_rows(results["trained"], "setting")
    return [
        (
            "model",
            f"{describe_model(m)} ({results['model_params']} params)",
        ),
        ("data", data_setting(cfg, d)),
        ("pairs", "; ".join(p["label"] for p in results["pairs"])),
        (
            "training",
            f"{cfg.optimizer}, constant lr, about {cfg.steps} steps per model: "
            + ", ".join(
                f"{key}: {rs[0]['steps']} steps = {rs[0]['epochs']} epochs"
                for (key,), rs in trained.items()
            ),
        ),
        (
            "seeds",
            f"{len(results['seeds'])} pairs per comparison; m1 and m2 of pair k share the "
            f"initialization of seed {cfg.seed}+k",
        ),
        (
            "alphas",
            f"{len(cfg.alphas())} values from {cfg.alpha_min:g} to {cfg.alpha_max:g}; "
            "each θ(α) evaluated as is, never trained",
        ),
    ]


EXPERIMENT = Experiment(
    id="flatness-interpolation",
    homework="HW1-3",
    title="Flatness by interpolation between two trained models",
    question="Along the straight line between models trained with small and large batches "
    "(or small and large learning rates), how do training and test loss and accuracy change, "
    "and which minimum is flatter?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
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

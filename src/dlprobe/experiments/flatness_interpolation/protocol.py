"""flatness-interpolation: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlprobe.data import Dataset
from dlprobe.experiments.classification import (
    check_batch_sizes,
    check_dataset,
    epochs_for_steps,
    load_classification,
    mlp_spec,
)
from dlprobe.experiments.common import check_common, model_seeds, require
from dlprobe.measure.interpolate import classification_metrics, interpolate
from dlprobe.models import MLP, mlp_param_count
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

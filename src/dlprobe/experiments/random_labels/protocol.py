"""random-labels: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlprobe.data import CORRUPTION_MODES, DATASETS, Dataset, corrupt_labels, load_dataset
from dlprobe.experiments.common import check_common, model_seeds, require
from dlprobe.measure.critical import critical_sample_ratio
from dlprobe.measure.norms import weight_norms
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import SCHEDULES, Population, TrainConfig

NORMS = ("l2_total", "spectral_product", "path_norm")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: int = 0  # training examples used; 0 = the whole training split
    hidden: tuple[int, ...] = (256, 256, 256)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation
    noise_levels: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # shares of labels randomized
    corruption: str = "shuffle"  # "shuffle": permute the chosen labels; "uniform": redraw them
    seeds: int = 3  # training runs per noise level, trained as one population
    seed: int = 0  # base seed: run i uses seed + i; also seeds the subset and the label noise
    optimizer: str = "adam"  # optimizer
    lr: float = 3e-3  # peak learning rate
    schedule: str = "cosine"  # learning-rate decay: constant, step or cosine (ends near 0)
    epochs: int = 50  # passes over the training set
    batch_size: int = 64  # examples per step; 0 = full batch
    eval_every_epochs: int = 1  # curve resolution, in epochs (early epochs show the rise)
    fit_accuracy: float = 0.99  # training accuracy (on the corrupted labels) that counts as fitted
    critical_examples: int = 300  # training inputs searched for critical samples (the first ones)
    critical_radius: float = 0.1  # half-width of the L-inf box around an input, in input units
    critical_steps: int = 20  # signed-gradient steps of the search for a label flip

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(self.train_subset >= 0, f"train_subset must be >= 0, got {self.train_subset}")
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, f"bad hidden widths {self.hidden}")
        require(
            all(0.0 <= p <= 1.0 for p in self.noise_levels),
            f"noise_levels must lie in [0, 1], got {self.noise_levels}",
        )
        require(
            len(set(self.noise_levels)) == len(self.noise_levels),
            f"noise_levels has repeated values: {self.noise_levels}",
        )
        require(
            0.0 in self.noise_levels and max(self.noise_levels) > 0,
            "noise_levels must contain 0 (true labels) and at least one level > 0",
        )
        require(
            self.corruption in CORRUPTION_MODES,
            f"unknown corruption {self.corruption!r}; valid: {', '.join(CORRUPTION_MODES)}",
        )
        require(
            self.train_subset == 0 or self.batch_size <= self.train_subset,
            f"batch_size must be <= train_subset ({self.train_subset}), got {self.batch_size}",
        )
        require(
            self.schedule in SCHEDULES,
            f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}",
        )
        require(self.eval_every_epochs >= 1, "eval_every_epochs must be >= 1")
        require(
            0 < self.fit_accuracy <= 1, f"fit_accuracy must be in (0, 1], got {self.fit_accuracy}"
        )
        require(self.critical_examples >= 1, "critical_examples must be >= 1")
        require(
            self.critical_radius > 0, f"critical_radius must be > 0, got {self.critical_radius}"
        )
        require(self.critical_steps >= 1, "critical_steps must be >= 1")


PROFILES = {
    "smoke": Config(
        train_subset=128,
        hidden=(32, 32, 32),
        noise_levels=(0.0, 0.5, 1.0),
        seeds=2,
        epochs=4,
        batch_size=32,
        critical_examples=16,
        critical_steps=3,
    ),
    "quick": Config(),
    "full": Config(dataset="mnist", lr=1e-3, epochs=200, batch_size=128, critical_examples=1000),
}


def prepare_data(cfg: Config, device) -> tuple[Dataset, dict[float, Dataset]]:
    """The clean dataset (subset if asked) and one label-corrupted copy per noise level.

    Only ``y_train`` differs between the copies; inputs and the test split are shared.
    """
    clean = load_dataset(cfg.dataset, device=device)
    if cfg.train_subset:
        clean = clean.subset_train(cfg.train_subset, seed=cfg.seed)
    noisy = {
        p: corrupt_labels(clean, p, seed=cfg.seed, mode=cfg.corruption) for p in cfg.noise_levels
    }
    return clean, noisy


def _epochs_to_fit(epochs: list[int], train_acc: list[float], threshold: float) -> int | None:
    return next((e for e, a in zip(epochs, train_acc, strict=True) if a >= threshold), None)


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    clean, noisy = prepare_data(cfg, run_dir.device)
    widths = [clean.input_dim, *cfg.hidden, clean.num_classes]
    seeds = model_seeds(cfg.seed, cfg.seeds)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        schedule=cfg.schedule,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.eval_every_epochs,
    )
    x_critical = clean.x_train[: cfg.critical_examples]  # (n_c, ...) same inputs at every level
    curves, finals, levels = [], [], []
    for p in cfg.noise_levels:
        data = noisy[p]
        changed = (data.y_train != clean.y_train).float().mean().item()
        levels.append({"noise": p, "labels_changed": changed})
        pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)
        hist = run_dir.train(f"noise-{p:g}", pop, data, train_cfg)
        for row in hist.epoch_records():
            curves.append({"noise": p, **{k: v for k, v in row.items() if k != "model"}})

        def probe(_ckpt, pop=pop):
            rows = []
            for k in range(pop.size):
                model = pop.model(k)
                csr = critical_sample_ratio(
                    model, x_critical, cfg.critical_radius, steps=cfg.critical_steps, seed=cfg.seed
                )
                norms = weight_norms(model)
                rows.append({"critical_ratio": csr.ratio, **{n: getattr(norms, n) for n in NORMS}})
            return {"rows": rows}

        probes = run_dir.stage(f"probe-noise-{p:g}", probe)["rows"]
        for k, seed in enumerate(seeds):
            test_acc = [a[k] for a in hist.test_accuracy]
            best = int(np.argmax(test_acc))
            finals.append(
                {
                    "noise": p,
                    "seed": seed,
                    "epochs_to_fit": _epochs_to_fit(
                        hist.epochs, [a[k] for a in hist.train_accuracy], cfg.fit_accuracy
                    ),
                    "train_loss": hist.final("train_loss")[k],
                    "test_loss": hist.final("test_loss")[k],
                    "train_accuracy": hist.final("train_accuracy")[k],
                    "test_accuracy": test_acc[-1],
                    "peak_test_accuracy": test_acc[best],
                    "peak_test_epoch": hist.epochs[best],
                    "diverged": k in hist.diverged,
                    **probes[k],
                }
            )
        run_dir.log(
            f"  noise {p:g}: final test accuracy {np.mean(hist.final('test_accuracy')):.3f}"
        )
    return {
        "model": {
            "widths": widths,
            "activation": cfg.activation,
            "params": mlp_param_count(widths, cfg.activation),
        },
        "data": {
            "dataset": clean.name,
            "n_train": clean.n_train,
            "n_test": clean.n_test,
            "num_classes": clean.num_classes,
            "corruption": cfg.corruption,
        },
        "noise_levels": list(cfg.noise_levels),
        "levels": levels,
        "fit_accuracy": cfg.fit_accuracy,
        "critical": {
            "examples": int(x_critical.shape[0]),
            "radius": cfg.critical_radius,
            "steps": cfg.critical_steps,
        },
        "epochs": cfg.epochs,
        "seeds": seeds,
        "curves": curves,
        "final": finals,
    }


def pct(p: float) -> str:
    return f"{100 * p:.0f}%"

"""actual-task: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.common import check_common, model_seeds, require
from dlprobe.models import (
    build_model,
    count_params,
    mlp_param_count,
    mlp_widths_for_budget,
    solve_width,
)
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

# Parameters per model when param_budget is 0, by dataset: small enough for a laptop,
# large enough that every depth of both families fits (checked by a test).
DEFAULT_BUDGETS = {
    "mnist1d": 5000,
    "digits": 3000,
    "mnist": 30000,
    "fashion-mnist": 30000,
    "cifar10": 100000,
}


MAX_SPREAD = 0.02  # largest allowed (max - min) / max of the parameter counts


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    mlp_depths: tuple[int, ...] = (1, 3, 6)  # hidden layers of each MLP
    cnn_depths: tuple[int, ...] = (1, 2, 3)  # conv layers of each CNN (then one linear layer)
    param_budget: int = 0  # parameters per model (matched within 2%); 0 = dataset default
    kernel_size: int = 5  # CNN kernel width (1-D) or side (2-D), in input samples
    activation: str = "relu"  # hidden activation of both families
    train_subset: int = 0  # training examples used; 0 = the whole training split
    seeds: int = 3  # training runs per model, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer
    lr: float = 3e-3  # learning rate
    epochs: int = 20  # passes over the training set
    batch_size: int = 100  # examples per step; 0 = full batch

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(
            len(self.mlp_depths) + len(self.cnn_depths) >= 2,
            "give at least two models (mlp_depths and cnn_depths together)",
        )
        for name in ("mlp_depths", "cnn_depths"):
            depths = getattr(self, name)
            require(min(depths, default=1) >= 1, f"{name} must be >= 1, got {depths}")
            require(len(set(depths)) == len(depths), f"{name} has repeated depths: {depths}")
        require(self.param_budget >= 0, f"param_budget must be >= 0, got {self.param_budget}")
        require(
            self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"kernel_size must be odd and >= 1 (same-size padding), got {self.kernel_size}",
        )
        require(self.train_subset >= 0, f"train_subset must be >= 0, got {self.train_subset}")
        require(
            self.batch_size <= (self.train_subset or self.batch_size),
            f"batch_size must be <= train_subset ({self.train_subset}), got {self.batch_size}",
        )

    def budget(self) -> int:
        return self.param_budget or DEFAULT_BUDGETS[self.dataset]


PROFILES = {
    "smoke": Config(seeds=2, epochs=2, train_subset=400),
    "quick": Config(),
    "full": Config(dataset="mnist", seeds=5, epochs=30, lr=1e-3),
}


def cnn_channels_for_budget(
    input_shape: list[int],
    num_classes: int,
    depth: int,
    target: int,
    activation: str = "relu",
    kernel_size: int = 5,
) -> list[int]:
    """Channels ``[c, ..., c, v]`` of a ``depth``-layer CNN with about ``target`` parameters.

    Like ``mlp_widths_for_budget``: a common channel count c is solved first, then the
    last layer's v is tuned for common counts c-3 ... c+3 (a count of 1-conv or 2-conv
    nets jumps by hundreds per channel), and the closest total wins. Models are
    counted on the meta device, so no large tensor is ever allocated.
    """

    def count(channels: list[int]) -> int:
        spec = _cnn_spec(input_shape, channels, num_classes, activation, kernel_size)
        with torch.device("meta"):
            return count_params(build_model(spec))

    c = solve_width(lambda w: count([w] * depth), target, max_width=4096)
    candidates = []
    for base in range(max(1, c - 3), c + 4):
        head = [base] * (depth - 1)
        v = solve_width(lambda v, head=head: count([*head, v]), target, max_width=4096)
        candidates.append([*head, v])
    return min(candidates, key=lambda chs: (abs(count(chs) - target), abs(chs[-1] - chs[0])))


def _cnn_spec(input_shape, channels, num_classes, activation, kernel_size) -> dict:
    return {
        "kind": "cnn",
        "input_shape": list(input_shape),
        "channels": list(channels),
        "num_classes": num_classes,
        "activation": activation,
        "kernel_size": kernel_size,
    }


def model_specs(cfg: Config, input_shape: list[int], num_classes: int) -> list[dict]:
    """One record per model: label, family, depth, buildable spec and parameter count.

    Raises:
        DlprobeError: some depth cannot meet the budget, or the counts spread over more
            than 2%.
    """
    target = cfg.budget()
    n_in = int(np.prod(input_shape))
    models = []
    for depth in cfg.cnn_depths:
        channels = cnn_channels_for_budget(
            input_shape, num_classes, depth, target, cfg.activation, cfg.kernel_size
        )
        spec = _cnn_spec(input_shape, channels, num_classes, cfg.activation, cfg.kernel_size)
        with torch.device("meta"):
            params = count_params(build_model(spec))
        label = f"CNN {depth} conv ({'-'.join(map(str, channels))} ch)"
        models.append(
            {"label": label, "family": "CNN", "depth": depth, "spec": spec, "params": params}
        )
    for depth in cfg.mlp_depths:
        widths = mlp_widths_for_budget(n_in, num_classes, depth, target, cfg.activation)
        spec = {"kind": "mlp", "widths": widths, "activation": cfg.activation}
        label = f"MLP {depth} hidden ({'-'.join(map(str, widths[1:-1]))})"
        models.append(
            {
                "label": label,
                "family": "MLP",
                "depth": depth,
                "spec": spec,
                "params": mlp_param_count(widths, cfg.activation),
            }
        )
    counts = [m["params"] for m in models]
    spread = (max(counts) - min(counts)) / max(counts)
    listing = ", ".join(f"{m['label']}: {m['params']}" for m in models)
    require(
        spread <= MAX_SPREAD,
        f"with a budget of {target} parameters the models have {listing} parameters, a spread "
        f"of {spread:.1%} > {MAX_SPREAD:.0%}; try another param_budget",
    )
    return models


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_dataset(cfg.dataset, device=run_dir.device)
    if cfg.train_subset:
        data = data.subset_train(cfg.train_subset, seed=cfg.seed)
    models = model_specs(cfg, list(data.input_shape), data.num_classes)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size
    )
    run_dir.log(
        f"{cfg.dataset}: {data.n_train} train / {data.n_test} test; "
        + "; ".join(f"{m['label']} {m['params']} params" for m in models)
    )
    curves, finals = [], []
    for m in models:
        pop = Population(lambda spec=m["spec"]: build_model(spec), seeds, run_dir.device)
        # epoch 0: the untrained models, so every curve starts at chance level
        start = {}
        for split, x, y in (
            ("train", data.x_train, data.y_train),
            ("test", data.x_test, data.y_test),
        ):
            loss, acc = evaluate_population(pop, x, y, default_loss(data))
            start[f"{split}_loss"], start[f"{split}_accuracy"] = loss.tolist(), acc.tolist()
        key = f"{m['family'].lower()}-{m['depth']}"
        hist = run_dir.train(key, pop, data, train_cfg)
        for k, seed in enumerate(seeds):
            curves.append(
                {
                    "model": m["label"],
                    "family": m["family"],
                    "seed": seed,
                    "epoch": 0,
                    **{name: values[k] for name, values in start.items()},
                }
            )
        for row in hist.epoch_records():
            curves.append(
                {
                    "model": m["label"],
                    "family": m["family"],
                    "seed": row["seed"],
                    "epoch": row["epoch"],
                    **{
                        name: row[name]
                        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
                    },
                }
            )
        for final in hist.final_records():
            finals.append(
                {
                    "model": m["label"],
                    "family": m["family"],
                    "depth": m["depth"],
                    "params": m["params"],
                    **final,
                }
            )
    return {
        "dataset": {
            "name": cfg.dataset,
            "n_train": data.n_train,
            "n_test": data.n_test,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        },
        "budget": cfg.budget(),
        "models": models,
        "curves": curves,
        "final": finals,
        "seeds": seeds,
    }

"""linear-regions: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.common import check_common, model_seeds, require
from dlprobe.measure.regions import linear_regions, mean_region_size_near_anchors
from dlprobe.models import MLP, count_params
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

PHASES = ("initial", "trained")


DRAWN_PLANES = 3  # region maps kept (for the first model) and drawn: the first planes


REGION_ACTIVATIONS = ("relu", "leaky_relu")  # those whose on/off pattern the probe reads


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[int, ...] = (64, 64)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation: relu or leaky_relu
    seeds: int = 5  # models, trained as one population; every plane is probed on each
    seed: int = 0  # base seed: model i uses seed + i; the planes' inputs are drawn with it
    optimizer: str = "adam"  # optimizer
    lr: float = 1e-3  # learning rate
    epochs: int = 30  # passes over the training set
    batch_size: int = 64  # examples per step; 0 = full batch
    planes: int = 5  # planes, each through three training inputs of three different classes
    resolution: int = 200  # grid points per plane axis
    extent: float = 0.5  # grid margin around the three inputs, fraction of their box's longer side
    near_radius: float = 0.15  # "near the inputs": within this fraction of their mean distance

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(
            self.activation in REGION_ACTIVATIONS,
            f"linear regions need a piecewise-linear activation with an on/off pattern: "
            f"{', '.join(REGION_ACTIVATIONS)}; got {self.activation!r}",
        )
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden needs >= 1 width >= 1")
        require(self.planes >= 1, f"planes must be >= 1, got {self.planes}")
        require(self.resolution >= 10, f"resolution must be >= 10, got {self.resolution}")
        require(self.extent >= 0, f"extent must be >= 0, got {self.extent}")
        require(
            0 < self.near_radius < 0.5,
            f"near_radius must be in (0, 0.5) (a fraction of the inputs' mean distance), "
            f"got {self.near_radius}",
        )


PROFILES = {
    "smoke": Config(hidden=(16,), seeds=1, epochs=2, planes=1, resolution=40),
    "quick": Config(),
    "full": Config(dataset="mnist", hidden=(200, 200), epochs=20, resolution=400),
}


def pick_planes(labels: np.ndarray, n: int, rng: np.random.Generator) -> list[list[int]]:
    """``n`` triplets of training indices, each of three different classes."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    out = []
    for _ in range(n):
        classes = rng.choice(list(by_class), size=3, replace=False)
        out.append([int(rng.choice(by_class[c])) for c in classes])
    return out


def mean_anchor_distance(anchor_coords: np.ndarray) -> float:
    """Mean of the three pairwise distances between the anchors (plane units)."""
    a = np.asarray(anchor_coords)
    return float(np.mean([np.linalg.norm(a[i] - a[j]) for i, j in ((0, 1), (0, 2), (1, 2))]))


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_dataset(cfg.dataset, device=run_dir.device)
    widths = [data.input_dim, *cfg.hidden, data.num_classes]
    seeds = model_seeds(cfg.seed, cfg.seeds)
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)
    loss_fn = default_loss(data)
    labels = data.y_train.cpu().numpy()
    triplets = pick_planes(labels, cfg.planes, np.random.default_rng(cfg.seed))
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.epochs,
    )

    accuracy, planes, regions, maps = [], [], [], []
    for phase in PHASES:
        if phase == "trained":
            run_dir.train("trained", pop, data, train_cfg)
        _, train_acc = evaluate_population(pop, data.x_train, data.y_train, loss_fn)
        _, test_acc = evaluate_population(pop, data.x_test, data.y_test, loss_fn)
        run_dir.log(f"linear regions on {cfg.planes} plane(s), {cfg.resolution}² grid ({phase})")
        for k, seed in enumerate(seeds):
            accuracy.append(
                {
                    "phase": phase,
                    "seed": seed,
                    "train_accuracy": float(train_acc[k]),
                    "test_accuracy": float(test_acc[k]),
                }
            )
            model = pop.model(k)
            for p, idx in enumerate(triplets):
                lr = linear_regions(model, *data.x_train[idx], cfg.resolution, cfg.extent)
                radius = cfg.near_radius * mean_anchor_distance(lr.anchor_coords)
                near, elsewhere = mean_region_size_near_anchors(lr, radius)
                if phase == PHASES[0] and k == 0:
                    planes.append(
                        {
                            "plane": p,
                            "train_indices": idx,
                            "classes": [int(labels[i]) for i in idx],
                            "anchor_coords": lr.anchor_coords.tolist(),
                            "near_radius": radius,
                        }
                    )
                regions.append(
                    {
                        "plane": p,
                        "seed": seed,
                        "phase": phase,
                        "n_regions": lr.n_regions,
                        "size_near": near,
                        "size_elsewhere": elsewhere,
                    }
                )
                if k == 0 and p < DRAWN_PLANES:
                    maps.append(
                        {
                            "plane": p,
                            "seed": seed,
                            "phase": phase,
                            "u": lr.grid_coords[0].tolist(),
                            "v": lr.grid_coords[1].tolist(),
                            "region_ids": lr.region_ids.tolist(),
                        }
                    )
    return {
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "model": {
            "kind": "mlp",
            "widths": widths,
            "activation": cfg.activation,
            "params": count_params(MLP(widths, cfg.activation)),
            "hidden_units": sum(cfg.hidden),
        },
        "seeds": seeds,
        "resolution": cfg.resolution,
        "extent": cfg.extent,
        "near_fraction": cfg.near_radius,
        "accuracy": accuracy,
        "planes": planes,
        "regions": regions,
        "maps": maps,
    }

"""sensitivity-manifold: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.common import check_common, group_rows, model_seeds, require
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.models import MLP, count_params
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

CASES = ("same", "different")  # three inputs of the same class / of three classes


CASE_TITLES = {"same": "three inputs of the same class", "different": "three different classes"}


PHASES = ("initial", "trained")


ANCHOR_T = (0.0, 2 * math.pi / 3, 4 * math.pi / 3)  # angles at which x(t) = x1, x2, x3


SENSITIVITY_CHUNK = 512  # ellipse points per vmapped Jacobian chunk (memory only)


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[int, ...] = (128, 128)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation
    seeds: int = 3  # models, trained as one population; every ellipse is probed on each
    seed: int = 0  # base seed: model i uses seed + i; the ellipses' inputs are drawn with it
    optimizer: str = "adam"  # optimizer
    lr: float = 1e-3  # learning rate
    epochs: int = 30  # passes over the training set
    batch_size: int = 64  # examples per step; 0 = full batch
    ellipses: int = 5  # ellipses per case (same class / different classes)
    n_points: int = 300  # points along each ellipse, evenly spaced in angle; a multiple of 3
    window: float = 0.1  # "at the data": within this angle of an input's angle, in radians

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden needs >= 1 width >= 1")
        require(self.ellipses >= 1, f"ellipses must be >= 1, got {self.ellipses}")
        require(
            self.n_points >= 6 and self.n_points % 3 == 0,
            f"n_points must be a multiple of 3 and >= 6 (so the three inputs lie on the "
            f"angle grid), got {self.n_points}",
        )
        require(
            2 * math.pi / self.n_points <= self.window < math.pi / 3,
            f"window must be in [2π/n_points, π/3) radians (at least one grid step, less "
            f"than half the gap between inputs), got {self.window}",
        )


PROFILES = {
    "smoke": Config(hidden=(16,), seeds=1, epochs=2, ellipses=1, n_points=90),
    "quick": Config(),
    "full": Config(dataset="mnist", hidden=(512, 512), epochs=20),
}


def ellipse_through(x1: np.ndarray, x2: np.ndarray, x3: np.ndarray):
    """Center c and axes a, b of ``x(t) = c + a cos t + b sin t`` through x1, x2, x3.

    With the inputs at t = 0, 2π/3, 4π/3 the cosines and sines each sum to zero, so
    c is the mean of the three, a = x1 - c and b = (x2 - x3) / √3 (exact, not fitted).
    """
    c = (x1 + x2 + x3) / 3
    return c, x1 - c, (x2 - x3) / math.sqrt(3)


def ellipse_points(c: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points (len(t), D) of the ellipse at angles t."""
    return c + np.cos(t)[:, None] * a + np.sin(t)[:, None] * b


def pick_triplets(labels: np.ndarray, n: int, same: bool, rng: np.random.Generator):
    """``n`` triplets of distinct training indices: one class thrice, or three classes."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    triplets = []
    for _ in range(n):
        if same:
            cls = rng.choice([c for c, idx in by_class.items() if len(idx) >= 3])
            idx = rng.choice(by_class[cls], size=3, replace=False)
        else:
            classes = rng.choice(list(by_class), size=3, replace=False)
            idx = np.array([rng.choice(by_class[c]) for c in classes])
        triplets.append([int(i) for i in idx])
    return triplets


def _probe(pop: Population, points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian sensitivity (K, N) and predicted class (K, N) of every model at points."""
    sens, pred = [], []
    for k in range(pop.size):
        model = pop.model(k)
        s = sensitivity(model, points, definition="jacobian", batch_size=SENSITIVITY_CHUNK)
        sens.append(s.per_example.cpu().numpy())
        with torch.no_grad():
            model.eval()
            pred.append(model(points).argmax(-1).cpu().numpy())
    return np.stack(sens), np.stack(pred)


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_dataset(cfg.dataset, device=run_dir.device)
    widths = [data.input_dim, *cfg.hidden, data.num_classes]
    seeds = model_seeds(cfg.seed, cfg.seeds)
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)
    loss_fn = default_loss(data)

    rng = np.random.default_rng(cfg.seed)
    labels = data.y_train.cpu().numpy()
    x_flat = data.x_train.reshape(data.n_train, -1).cpu().double().numpy()  # (n, D)
    t = 2 * math.pi * np.arange(cfg.n_points) / cfg.n_points  # anchors at 0, n/3, 2n/3
    ellipses, points = [], []
    for case in CASES:
        for j, idx in enumerate(pick_triplets(labels, cfg.ellipses, case == "same", rng)):
            c, a, b = ellipse_through(*x_flat[idx])
            ellipses.append(
                {
                    "case": case,
                    "ellipse": j,
                    "train_indices": idx,
                    "classes": [int(labels[i]) for i in idx],
                    "center": c.tolist(),
                    "a": a.tolist(),
                    "b": b.tolist(),
                }
            )
            points.append(ellipse_points(c, a, b, t))
    x_all = torch.as_tensor(np.concatenate(points), dtype=data.x_train.dtype)
    x_all = x_all.reshape(-1, *data.input_shape).to(run_dir.device)  # (E * n_points, ...)

    accuracy, curves = [], []
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.epochs,
    )
    for phase in PHASES:
        if phase == "trained":
            run_dir.train("trained", pop, data, train_cfg)
        _, train_acc = evaluate_population(pop, data.x_train, data.y_train, loss_fn)
        _, test_acc = evaluate_population(pop, data.x_test, data.y_test, loss_fn)
        for k, seed in enumerate(seeds):
            accuracy.append(
                {
                    "phase": phase,
                    "seed": seed,
                    "train_accuracy": float(train_acc[k]),
                    "test_accuracy": float(test_acc[k]),
                }
            )
        run_dir.log(f"probing {len(ellipses)} ellipses x {cfg.n_points} points ({phase})")
        sens, pred = _probe(pop, x_all)  # (K, E * n_points) each
        sens = sens.reshape(pop.size, len(ellipses), cfg.n_points)
        pred = pred.reshape(pop.size, len(ellipses), cfg.n_points)
        for k, seed in enumerate(seeds):
            for e, ell in enumerate(ellipses):
                curves += [
                    {
                        "case": ell["case"],
                        "ellipse": ell["ellipse"],
                        "seed": seed,
                        "phase": phase,
                        "t": float(t[i]),
                        "sensitivity": float(sens[k, e, i]),
                        "predicted": int(pred[k, e, i]),
                    }
                    for i in range(cfg.n_points)
                ]
    return {
        "dataset": {
            "name": data.name,
            "n_train": data.n_train,
            "n_test": data.n_test,
            "input_shape": list(data.input_shape),
        },
        "model": {
            "kind": "mlp",
            "widths": widths,
            "activation": cfg.activation,
            "params": count_params(MLP(widths, cfg.activation)),
        },
        "seeds": seeds,
        "anchor_t": list(ANCHOR_T),
        "window": cfg.window,
        "accuracy": accuracy,
        "ellipses": ellipses,
        "curves": curves,
    }


def _near_mask(t: np.ndarray, window: float) -> np.ndarray:
    """True where t is within ``window`` (circular distance) of an anchor angle."""
    d = np.abs(t[:, None] - np.array(ANCHOR_T)[None, :]) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d).min(axis=1) <= window + 1e-12


def per_ellipse(results: dict) -> list[dict]:
    """One record per (case, phase, seed, ellipse): mean sensitivity at / between the data,
    their ratio, and how often the predicted class changes along the closed ellipse."""
    rows = []
    for (case, phase, seed, e), rs in group_rows(
        results["curves"], "case", "phase", "seed", "ellipse"
    ).items():
        t = np.array([r["t"] for r in rs])
        s = np.array([r["sensitivity"] for r in rs])
        pred = np.array([r["predicted"] for r in rs])
        near = _near_mask(t, results["window"])
        at, between = float(s[near].mean()), float(s[~near].mean())
        rows.append(
            {
                "case": case,
                "phase": phase,
                "seed": seed,
                "ellipse": e,
                "at_data": at,
                "between": between,
                "ratio": between / at if at > 0 else float("inf"),
                "class_changes": int((pred != np.roll(pred, 1)).sum()),
            }
        )
    return rows

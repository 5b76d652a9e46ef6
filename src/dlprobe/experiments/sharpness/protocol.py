"""sharpness: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlprobe.experiments.classification import (
    check_batch_sizes,
    check_dataset,
    epochs_for_steps,
    load_classification,
    mlp_spec,
    probe_examples,
)
from dlprobe.experiments.common import check_common, model_seeds, require
from dlprobe.measure.interpolate import classification_metrics
from dlprobe.measure.rescale import rescale_relu_layers
from dlprobe.measure.sharpness import sharpness, valley_width
from dlprobe.models import MLP, PIECEWISE_LINEAR, mlp_param_count
from dlprobe.train import Population, TrainConfig

# Result field -> label; the valley width grows with flatness, the others with sharpness.
MEASURES = {
    "hessian": "Hessian estimate ‖H‖₂ε²/(2(1+L))",
    "keskar": "Keskar box maximum (L-BFGS-B)",
    "ball": "max loss rise in the ε-ball",
    "valley_width": "valley width (larger = flatter)",
}


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    train_subset: int = 2000  # training examples (a seeded subset; 0 = all)
    hidden: tuple[int, ...] = (32, 32)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation; positively homogeneous for the rescaling
    batch_sizes: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 0)  # 0 = full
    optimizer: str = "adam"  # optimizer, the same for every batch size
    lr: float = 1e-3  # learning rate, the same for every batch size
    steps: int = 2000  # optimizer steps per model (rounded to whole epochs), same for all
    seeds: int = 2  # models per batch size (a population)
    seed: int = 0  # base seed (initializations, batch order, subsets, random directions)
    epsilon: float = 1e-4  # neighbourhood size of the box, the ball and the Hessian estimate
    sharpness_examples: int = 500  # training examples of the loss that is probed
    keskar_steps: int = 20  # L-BFGS-B iterations of Keskar's box maximization
    ball_steps: int = 20  # projected gradient-ascent steps in the ball
    valley_height: float = 0.01  # loss rise that defines the valley's edge
    valley_directions: int = 5  # random unit directions the valley width is averaged over
    valley_max_distance: float = 20.0  # farthest distance searched along a direction
    rescale_factors: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # Dinh et al.'s a
    rescale_layer: int = 0  # Linear layer scaled by a (the next one by 1/a)

    def validate(self) -> None:
        check_common(self)
        check_dataset(self)
        require(len(self.batch_sizes) >= 2, "give at least two batch sizes")
        require(len(set(self.batch_sizes)) == len(self.batch_sizes), "batch sizes must differ")
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(self.epsilon > 0, f"epsilon must be > 0, got {self.epsilon}")
        for name in ("sharpness_examples", "keskar_steps", "ball_steps", "valley_directions"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.valley_height > 0, f"valley_height must be > 0, got {self.valley_height}")
        require(self.valley_max_distance > 0, "valley_max_distance must be > 0")
        require(
            self.activation in PIECEWISE_LINEAR,
            f"the rescaling needs a positively homogeneous activation "
            f"({', '.join(PIECEWISE_LINEAR)}), got {self.activation!r}",
        )
        require(
            len(self.rescale_factors) >= 2 and min(self.rescale_factors) > 0,
            f"rescale_factors must be >= 2 numbers > 0, got {self.rescale_factors}",
        )
        require(
            0 <= self.rescale_layer < len(self.hidden),
            f"rescale_layer must be in [0, {len(self.hidden) - 1}] (a layer with a next one)",
        )


PROFILES = {
    "smoke": Config(
        train_subset=200,
        hidden=(8,),
        batch_sizes=(8, 12, 16, 24, 32, 48, 64, 96, 128, 0),
        steps=20,
        seeds=1,
        sharpness_examples=50,
        keskar_steps=3,
        ball_steps=3,
        valley_directions=1,
        rescale_factors=(0.1, 10.0),
    ),
    "quick": Config(),
    "full": Config(
        dataset="mnist",
        train_subset=0,
        hidden=(32, 32),  # 784-32-32-10: 26 506 parameters
        batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        steps=10000,
        seeds=3,
        keskar_steps=100,
        ball_steps=100,
        valley_directions=10,
    ),
}


def measure(model, cfg: Config, x, y) -> dict:
    """Every sharpness measure of one model on (x, y)."""
    kw = {"epsilon": cfg.epsilon, "seed": cfg.seed}
    hess = sharpness(model, F.cross_entropy, x, y, method="hessian", **kw)
    keskar = sharpness(model, F.cross_entropy, x, y, method="keskar", steps=cfg.keskar_steps, **kw)
    ball = sharpness(model, F.cross_entropy, x, y, method="ball", steps=cfg.ball_steps, **kw)
    valley = valley_width(
        model,
        F.cross_entropy,
        x,
        y,
        cfg.valley_height,
        n_directions=cfg.valley_directions,
        max_distance=cfg.valley_max_distance,
        seed=cfg.seed,
    )
    return {
        "probe_loss": hess.base_loss,
        "hessian": hess.value,
        "hessian_norm": hess.hessian_norm,
        "keskar": keskar.value,
        "ball": ball.value,
        # inf where a direction never reached the height within the search distance
        "valley_width": valley.mean if math.isfinite(valley.mean) else None,
    }


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_classification(cfg.dataset, cfg.train_subset, cfg.seed, run_dir.device)
    check_batch_sizes(cfg.batch_sizes, data.n_train)
    spec = mlp_spec(data, cfg.hidden, cfg.activation)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    x_probe, y_probe = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    ordered = sorted(cfg.batch_sizes, key=lambda s: s or data.n_train)
    dinh_batch = ordered[len(ordered) // 2]  # the rescaled model: a middle batch size
    rows, dinh_model = [], None
    for b in ordered:
        batch = b or data.n_train
        epochs = epochs_for_steps(cfg.steps, b, data.n_train)
        train_cfg = TrainConfig(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            epochs=epochs,
            batch_size=b,
            eval_every_epochs=epochs,  # only the final metrics are used
        )
        key = f"bs{batch}"
        pop = Population(lambda: MLP(spec["widths"], cfg.activation), seeds, run_dir.device)
        hist = run_dir.train(key, pop, data, train_cfg)
        probes = run_dir.stage(
            f"probe-{key}",
            lambda _ckpt, pop=pop: {
                "probes": [measure(pop.model(k), cfg, x_probe, y_probe) for k in range(pop.size)]
            },
        )["probes"]
        run_dir.log(f"  {key}: sharpness of {pop.size} models measured")
        if b == dinh_batch:
            dinh_model, dinh_source = (
                pop.model(0),
                {"stage": key, "batch_size": batch, "seed": seeds[0]},
            )
        steps = epochs * train_cfg.steps_per_epoch(data.n_train)
        for final, probe in zip(hist.final_records(), probes, strict=True):
            rows.append(
                {
                    "batch_size": batch,
                    "full_batch": b == 0,
                    "stage": key,
                    "epochs": epochs,
                    "steps": steps,
                    **final,
                    **probe,
                }
            )

    def rescaled(_ckpt) -> dict:
        out = []
        with torch.no_grad():
            reference = dinh_model(data.x_test)  # (n_test, C)
        for a in sorted(set(cfg.rescale_factors) | {1.0}):
            model = rescale_relu_layers(dinh_model, cfg.rescale_layer, float(a))
            with torch.no_grad():
                change = (model(data.x_test) - reference).abs().max().item()
            train = classification_metrics(model, data.x_train, data.y_train)
            test = classification_metrics(model, data.x_test, data.y_test)
            out.append(
                {
                    "factor": float(a),
                    "train_loss": train["loss"],
                    "train_accuracy": train["accuracy"],
                    "test_loss": test["loss"],
                    "test_accuracy": test["accuracy"],
                    "max_output_change": change,
                    **measure(model, cfg, x_probe, y_probe),
                }
            )
        return {"rows": out}

    dinh = run_dir.stage("rescaled", rescaled)["rows"]
    run_dir.log(f"  Dinh et al. rescaling: {len(dinh)} factors measured")
    return {
        "model": spec,
        "model_params": mlp_param_count(spec["widths"], cfg.activation),
        "data": {"name": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "sharpness_examples": int(x_probe.shape[0]),
        "epsilon": cfg.epsilon,
        "valley_height": cfg.valley_height,
        "seeds": seeds,
        "runs": rows,
        "dinh_source": {**dinh_source, "layer": cfg.rescale_layer},
        "dinh": dinh,
    }

"""sensitivity: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

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
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.measure.sharpness import METHODS as SHARPNESS_METHODS
from dlprobe.measure.sharpness import sharpness
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import Population, TrainConfig


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    train_subset: int = 1000  # training examples (a seeded subset; 0 = all): full batch stays cheap
    hidden: tuple[int, ...] = (64, 64)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 0)  # examples/step; 0 = full
    optimizer: str = "adam"  # optimizer, the same for every batch size
    lr: float = 1e-3  # learning rate, the same for every batch size
    steps: int = 2000  # optimizer steps per model (rounded to whole epochs), same for all
    seeds: int = 3  # models per batch size (a population), seeds seed..seed+seeds-1
    seed: int = 0  # base seed (initializations, batch order, training subset)
    sensitivity_examples: int = 0  # test examples sensitivity is averaged over; 0 = all
    sharpness_method: str = "hessian"  # hessian: ||H||_2 eps^2 / (2 (1 + L)); or keskar, ball
    sharpness_examples: int = 500  # training examples of the sharpness loss
    epsilon: float = 1e-4  # sharpness neighbourhood size
    eval_batch_size: int = 1000  # examples per chunk of per-example gradients (memory only)

    def validate(self) -> None:
        check_common(self)
        check_dataset(self)
        require(len(self.batch_sizes) >= 2, "give at least two batch sizes")
        require(len(set(self.batch_sizes)) == len(self.batch_sizes), "batch sizes must differ")
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(
            self.sharpness_method in SHARPNESS_METHODS,
            f"unknown sharpness method {self.sharpness_method!r}; "
            f"valid: {', '.join(SHARPNESS_METHODS)}",
        )
        require(self.epsilon > 0, f"epsilon must be > 0, got {self.epsilon}")
        require(self.sensitivity_examples >= 0, "sensitivity_examples must be >= 0")
        require(self.sharpness_examples >= 1, "sharpness_examples must be >= 1")
        require(self.eval_batch_size >= 1, "eval_batch_size must be >= 1")


PROFILES = {
    "smoke": Config(
        train_subset=200,
        hidden=(16,),
        batch_sizes=(8, 16, 32, 64, 0),
        steps=30,
        seeds=2,
        sensitivity_examples=200,
        sharpness_examples=100,
    ),
    "quick": Config(),
    "full": Config(
        dataset="mnist",
        train_subset=0,
        hidden=(256, 256),
        batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 0),
        steps=10000,
        seeds=3,
    ),
}


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_classification(cfg.dataset, cfg.train_subset, cfg.seed, run_dir.device)
    check_batch_sizes(cfg.batch_sizes, data.n_train)
    spec = mlp_spec(data, cfg.hidden, cfg.activation)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    n_sens = data.n_test if cfg.sensitivity_examples == 0 else cfg.sensitivity_examples
    x_sens, y_sens = data.x_test[:n_sens], data.y_test[:n_sens]
    x_sharp, y_sharp = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    rows = []
    for b in sorted(cfg.batch_sizes, key=lambda s: s or data.n_train):
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

        def probe(_ckpt, pop=pop):
            out = []
            for k in range(pop.size):
                model = pop.model(k)
                s_grad = sensitivity(
                    model, x_sens, y_sens, F.cross_entropy, "loss-gradient", cfg.eval_batch_size
                )
                s_jac = sensitivity(model, x_sens, None, None, "jacobian", cfg.eval_batch_size)
                sharp = sharpness(
                    model,
                    F.cross_entropy,
                    x_sharp,
                    y_sharp,
                    cfg.epsilon,
                    cfg.sharpness_method,
                    seed=cfg.seed,
                )
                out.append(
                    {
                        "sensitivity_loss_gradient": s_grad.mean,
                        "sensitivity_jacobian": s_jac.mean,
                        "sharpness": sharp.value,
                        "hessian_norm": sharp.hessian_norm,
                    }
                )
            return {"probes": out}

        probes = run_dir.stage(f"probe-{key}", probe)["probes"]
        run_dir.log(f"  {key}: sensitivity and sharpness of {pop.size} models measured")
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
    return {
        "model": spec,
        "model_params": mlp_param_count(spec["widths"], cfg.activation),
        "data": {"name": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "sensitivity_examples": n_sens,
        "sharpness_examples": int(x_sharp.shape[0]),
        "sharpness_method": cfg.sharpness_method,
        "epsilon": cfg.epsilon,
        "seeds": seeds,
        "runs": rows,
    }

"""minimal-ratio: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from dlprobe.data import FUNCTIONS, function_dataset
from dlprobe.experiments.common import check_common, model_seeds, parse_widths, require
from dlprobe.measure.gradient import population_gradient_norm, population_loss
from dlprobe.measure.hessian import population_hessian_eigenvalues
from dlprobe.measure.minimal_ratio import minimal_ratio, minimal_ratio_by_sampling
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import Population, TrainConfig

LOW_LOSS = 0.01  # runs below this final loss are "low-loss", as in the homework's example


@dataclass(frozen=True)
class Config:
    model: str = "1-10-10-1"  # layer widths; the homework's 141-parameter network
    # hidden activation, non-linear (a linear net is the pitfall); with sigmoid more runs end
    # at higher-loss critical points than with tanh, which spreads the loss axis
    activation: str = "sigmoid"
    function: str = "sine"  # target function (dlprobe datasets); sine = sin(x) on [0, 2π]
    n_points: int = 64  # training points, evenly spaced on the function's domain
    seeds: int = 100  # training runs, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer of both phases
    lr: float = 1e-2  # learning rate of phase 1 (loss)
    epochs: int = 1000  # phase 1: full-batch epochs minimizing the loss
    grad_lr: float = 1e-3  # learning rate of phase 2 (squared gradient norm)
    grad_epochs: int = 1500  # phase 2: epoch limit when minimizing the squared gradient norm
    grad_norm_threshold: float = 1e-3  # phase 2 stops a model once its gradient norm is below
    check_every_epochs: int = 10  # phase 2: epochs between gradient-norm checks
    eig_rel_tol: float = 1e-9  # |eigenvalue| <= eig_rel_tol * max|eigenvalue| counts as zero
    n_samples: int = 1000  # sampling definition: random parameter vectors per run
    radius: float = 1e-2  # sampling definition: distance of each sample (parameter-space 2-norm)

    def validate(self) -> None:
        check_common(self)
        widths = parse_widths(self.model)
        require(
            widths[0] == 1 and widths[-1] == 1,
            f"model must have 1 input and 1 output (a 1-D function), got {self.model!r}",
        )
        require(
            self.function in FUNCTIONS,
            f"unknown function {self.function!r}; valid names: {', '.join(FUNCTIONS)}",
        )
        require(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        for name in ("grad_lr", "grad_epochs", "grad_norm_threshold", "check_every_epochs"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(self.eig_rel_tol >= 0, f"eig_rel_tol must be >= 0, got {self.eig_rel_tol}")
        require(self.n_samples >= 1, f"n_samples must be >= 1, got {self.n_samples}")
        require(
            self.radius > 0 and math.isfinite(self.radius),
            f"radius must be > 0, got {self.radius}",
        )


PROFILES = {
    "smoke": Config(
        model="1-4-4-1",
        n_points=16,
        seeds=6,
        epochs=40,
        grad_epochs=40,
        check_every_epochs=5,
        n_samples=64,
    ),
    "quick": Config(),
    "full": Config(grad_epochs=10000, n_samples=5000),
}


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    widths = parse_widths(cfg.model)
    n_params = mlp_param_count(widths, cfg.activation)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    data = function_dataset(cfg.function, cfg.n_points).to(run_dir.device)
    x, y = data.x_train, data.y_train
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)

    def loss_and_grad_norm() -> tuple[list[float], list[float]]:
        # float64 at the population's current parameters, like the Hessian below
        params = {n: p.detach().double() for n, p in pop.params.items()}
        loss = population_loss(pop.base, params, F.mse_loss, x.double(), y.double())
        g = population_gradient_norm(pop.base, params, F.mse_loss, x.double(), y.double())
        return loss.cpu().tolist(), g.cpu().tolist()

    run_dir.train(
        "loss-phase",
        pop,
        data,
        TrainConfig(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            epochs=cfg.epochs,
            batch_size=0,
            eval_every_epochs=cfg.epochs,
        ),
    )
    loss_1, grad_norm_1 = loss_and_grad_norm()
    hist = run_dir.train(
        "grad-norm-phase",
        pop,
        data,
        TrainConfig(
            optimizer=cfg.optimizer,
            lr=cfg.grad_lr,
            epochs=cfg.grad_epochs,
            batch_size=0,
            objective="grad_norm_sq",
            stop_below_grad_norm=cfg.grad_norm_threshold,
            eval_every_epochs=cfg.check_every_epochs,
        ),
    )
    loss_2, grad_norm_2 = loss_and_grad_norm()

    def probes(_ckpt) -> dict:
        run_dir.log(f"exact Hessians ({n_params}x{n_params}, float64) of {len(seeds)} runs")
        eigs = population_hessian_eigenvalues(pop.base, pop.params, F.mse_loss, x, y)  # (K, P)
        run_dir.log(f"sampling {cfg.n_samples} neighbours at radius {cfg.radius:g} per run")
        sampled = [
            minimal_ratio_by_sampling(
                pop.model(k), F.mse_loss, x, y, cfg.n_samples, cfg.radius, seed=seed
            )
            for k, seed in enumerate(seeds)
        ]
        return {"eigenvalues": eigs.cpu(), "sampled": sampled}

    measured = run_dir.stage("probes", probes)
    eigs = measured["eigenvalues"]  # (K, P) float64, ascending
    ratios = minimal_ratio(eigs, rel_tol=cfg.eig_rel_tol)
    flat = pop.flat_params().cpu()  # (K, P)
    runs = []
    for k, seed in enumerate(seeds):
        lam, mr, s = eigs[k], ratios[k], measured["sampled"][k]
        runs.append(
            {
                "run": k,
                "seed": seed,
                "loss_after_loss_phase": loss_1[k],
                "grad_norm_after_loss_phase": grad_norm_1[k],
                "loss": loss_2[k],
                "grad_norm": grad_norm_2[k],
                "reached_threshold": grad_norm_2[k] < cfg.grad_norm_threshold,
                "stopped_at_epoch": hist.stopped_at_epoch[k],
                "diverged": k in hist.diverged,
                "minimal_ratio": mr.positive,
                "negative_ratio": mr.negative,
                "zero_ratio": mr.zero,
                "eig_tol": mr.tol,
                "max_eigenvalue": float(lam[-1]),
                "min_eigenvalue": float(lam[0]),
                "hessian_trace": float(lam.sum()),
                "sampled_ratio": s.higher,
                "sampled_lower": s.lower,
                "sampled_ties": s.ties,
                "sampled_stderr": s.stderr,
            }
        )
    return {
        "setup": [
            {
                "widths": widths,
                "activation": cfg.activation,
                "params": n_params,
                "function": cfg.function,
                "formula": FUNCTIONS[cfg.function].formula,
                "domain": list(FUNCTIONS[cfg.function].domain),
                "n_points": cfg.n_points,
                "grad_norm_threshold": cfg.grad_norm_threshold,
                "eig_rel_tol": cfg.eig_rel_tol,
                "n_samples": cfg.n_samples,
                "radius": cfg.radius,
            }
        ],
        "runs": runs,
        "spectra": [
            {"run": k, "seed": seed, "eigenvalues": eigs[k].tolist()}
            for k, seed in enumerate(seeds)
        ],
        "final_params": [
            {"run": k, "seed": seed, "params": flat[k].tolist()} for k, seed in enumerate(seeds)
        ],
        "seeds": seeds,
    }


def column(results: dict, key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in results["runs"]], dtype=float)


def loss_groups(results: dict) -> dict[str, np.ndarray]:
    loss = column(results, "loss")
    return {f"loss < {LOW_LOSS:g}": loss < LOW_LOSS, f"loss >= {LOW_LOSS:g}": loss >= LOW_LOSS}


def ratios_at(results: dict, rel_tol: float) -> np.ndarray:
    eigs = np.array([s["eigenvalues"] for s in results["spectra"]], dtype=float)  # (K, P)
    return np.array([m.positive for m in minimal_ratio(eigs, rel_tol=rel_tol)])

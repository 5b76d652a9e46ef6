"""error-surface: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from dlprobe.data import FUNCTIONS, function_dataset
from dlprobe.experiments.common import check_common, model_seeds, parse_widths, require
from dlprobe.measure.interpolate import interpolate
from dlprobe.measure.surface import loss_surface, project_onto_directions, random_directions
from dlprobe.measure.trajectories import project_trajectories
from dlprobe.models import MLP, count_params
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

MAX_PARAMS = 64  # the per-parameter figure draws one panel per parameter


@dataclass(frozen=True)
class Config:
    function: str = "sinc"  # target function (see `dlprobe datasets`)
    widths: str = "1-4-4-1"  # layer widths of the tiny MLP (33 parameters)
    activation: str = "relu"  # hidden activation
    n_points: int = 64  # training points, evenly spaced on the function's domain
    seeds: int = 4  # training runs (one population); the lowest final loss is probed
    seed: int = 0  # base seed: run i uses seed + i; also seeds the samples and directions
    optimizer: str = "adam"  # optimizer
    lr: float = 1e-2  # learning rate
    epochs: int = 2000  # full-batch steps (one per epoch)
    snapshot_every_epochs: int = 50  # trajectory resolution drawn on the surface, in epochs
    alpha_range: tuple[float, float] = (-0.25, 1.25)  # alpha from..to on the init-final line
    alpha_points: int = 61  # alphas on the line (0 and 1 are always included)
    param_range: float = 1.0  # each parameter alone moved by -this..+this (absolute units)
    param_points: int = 41  # perturbations per parameter (odd: 0 is on the grid)
    sample_radii: tuple[float, ...] = (
        0.01,
        0.03,
        0.1,
        0.3,
    )  # std of the Gaussian noise added to every parameter
    samples_per_radius: int = 150  # perturbed weight vectors per radius
    tsne_pca_components: int = 10  # PCA dimensions fed to t-SNE
    surface_extent: float = 1.0  # plane coordinates span -this..+this (filter-normalized units)
    surface_points: int = 41  # grid points per direction of the plane

    def validate(self) -> None:
        check_common(self)
        require(
            self.function in FUNCTIONS,
            f"unknown function {self.function!r}; valid names: {', '.join(FUNCTIONS)}",
        )
        params = count_params(MLP(parse_widths(self.widths), self.activation))
        require(
            params <= MAX_PARAMS,
            f"the model {self.widths} has {params} parameters; this experiment draws one "
            f"panel per parameter, so use a tiny model (<= {MAX_PARAMS}, e.g. 1-4-4-1)",
        )
        require(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        require(
            self.snapshot_every_epochs >= 1 and self.epochs % self.snapshot_every_epochs == 0,
            f"epochs ({self.epochs}) must be a multiple of snapshot_every_epochs "
            f"({self.snapshot_every_epochs} >= 1) so that the final weights are a snapshot",
        )
        lo, hi = self.alpha_range
        require(lo <= 0 and hi >= 1, f"alpha_range must contain [0, 1], got {self.alpha_range}")
        require(self.alpha_points >= 2, "alpha_points must be >= 2")
        require(self.param_range > 0, f"param_range must be > 0, got {self.param_range}")
        require(
            self.param_points >= 3 and self.param_points % 2 == 1,
            f"param_points must be odd and >= 3 (0 on the grid), got {self.param_points}",
        )
        require(
            len(self.sample_radii) >= 1 and min(self.sample_radii) > 0,
            f"sample_radii must be positive, got {self.sample_radii}",
        )
        require(self.samples_per_radius >= 2, "samples_per_radius must be >= 2")
        require(self.tsne_pca_components >= 2, "tsne_pca_components must be >= 2")
        require(self.surface_extent > 0, "surface_extent must be > 0")
        require(self.surface_points >= 3, "surface_points must be >= 3")


PROFILES = {
    "smoke": Config(
        seeds=2,
        epochs=100,
        snapshot_every_epochs=25,
        alpha_points=7,
        param_points=5,
        sample_radii=(0.03, 0.3),
        samples_per_radius=10,
        surface_points=7,
    ),
    "quick": Config(),
    "full": Config(
        seeds=8, epochs=10000, snapshot_every_epochs=200, samples_per_radius=500, surface_points=61
    ),
}


def parameter_names(model: nn.Module) -> list[str]:
    """``W2[i,j]`` / ``b2[i]`` for every scalar parameter, in flat-vector order."""
    linear_of = {
        name: i + 1
        for i, (name, _) in enumerate(
            (n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)
        )
    }
    names = []
    for pname, p in model.named_parameters():
        module, kind = pname.rsplit(".", 1)
        symbol = f"{'W' if kind == 'weight' else 'b'}{linear_of[module]}"
        names += [f"{symbol}[{','.join(map(str, idx))}]" for idx in np.ndindex(*p.shape)]
    return names


def vector_to_model(template: nn.Module, vector: torch.Tensor) -> nn.Module:
    model = MLP(template.widths, template.activation).to(vector.device, vector.dtype)
    nn.utils.vector_to_parameters(vector, model.parameters())
    return model


def batch_losses(model: nn.Module, thetas: torch.Tensor, x, y, loss_fn) -> torch.Tensor:
    """Loss (N,) of ``model``'s architecture at each flat parameter vector of thetas (N, P)."""
    shapes = [(n, p.shape, p.numel()) for n, p in model.named_parameters()]

    def loss_at(theta: torch.Tensor) -> torch.Tensor:
        parts = theta.split([numel for _, _, numel in shapes])
        params = {n: t.reshape(shape) for (n, shape, _), t in zip(shapes, parts, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    with torch.no_grad():
        return torch.cat([vmap(loss_at)(chunk) for chunk in thetas.split(1024)])


def alpha_grid(cfg: Config) -> list[float]:
    alphas = np.linspace(*cfg.alpha_range, cfg.alpha_points)
    return sorted({round(float(a), 10) for a in alphas} | {0.0, 1.0})


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    device = run_dir.device
    data = function_dataset(cfg.function, cfg.n_points).to(device)
    loss_fn = default_loss(data)
    widths = parse_widths(cfg.widths)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, device)
    initial_loss, _ = evaluate_population(pop, data.x_train, data.y_train, loss_fn)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=0,
        eval_every_epochs=cfg.snapshot_every_epochs,
        snapshot_every_epochs=cfg.snapshot_every_epochs,
    )
    hist = run_dir.train("tiny", pop, data, train_cfg)
    trajectories = torch.stack(hist.snapshots, dim=1).to(device)  # (K, T, P)
    template = pop.model(0)
    names = parameter_names(template)
    final_loss = hist.final("train_loss")
    finite = [k for k in range(len(seeds)) if k not in hist.diverged]
    require(bool(finite), "every run diverged; lower lr")
    best = min(finite, key=lambda k: final_loss[k])
    run_dir.log(f"probing seed {seeds[best]} (final training loss {final_loss[best]:.3g})")
    x, y = data.x_train, data.y_train

    # (a) the straight line from the initial to the final weights of every run
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        with torch.no_grad():
            return {
                "train_loss": loss_fn(model(x), y).item(),
                "test_loss": loss_fn(model(data.x_test), data.y_test).item(),
            }

    line = []
    for k, seed in enumerate(seeds):
        start = vector_to_model(template, trajectories[k, 0])
        end = vector_to_model(template, trajectories[k, -1])
        line += [{"seed": seed, **r} for r in interpolate(start, end, alpha_grid(cfg), evaluate)]

    # (b) every parameter alone moved around the final weights of the probed run
    theta = trajectories[best, -1]  # (P,)
    model = vector_to_model(template, theta)
    deltas = torch.linspace(-cfg.param_range, cfg.param_range, cfg.param_points)
    deltas[cfg.param_points // 2] = 0.0  # exactly on the final weights
    eye = torch.eye(theta.numel(), device=device, dtype=theta.dtype)  # (P, P)
    moved = theta + deltas.to(theta)[None, :, None] * eye[:, None, :]  # (P, G, P)
    losses = batch_losses(model, moved.reshape(-1, theta.numel()), x, y, loss_fn)
    losses = losses.reshape(theta.numel(), -1).tolist()  # [P][G]
    per_parameter = [
        {"index": i, "name": names[i], "value": theta[i].item(), "delta": d, "loss": losses[i][j]}
        for i in range(theta.numel())
        for j, d in enumerate(deltas.tolist())
    ]

    # (c) Gaussian perturbations of the final weights at several radii, reduced to 2-D
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = torch.randn(len(cfg.sample_radii), cfg.samples_per_radius, theta.numel(), generator=gen)
    radii = torch.tensor(cfg.sample_radii)[:, None, None]
    samples = (theta.cpu() + radii * noise.to(theta.dtype)).reshape(-1, theta.numel())  # (N, P)
    sample_loss = batch_losses(model, samples.to(device), x, y, loss_fn).cpu()
    sample_radius = radii.expand(-1, cfg.samples_per_radius, 1).reshape(-1).tolist()
    runs = [samples, theta.cpu()[None]]  # the final point as its own "run" of one
    pca = project_trajectories(runs, method="pca", seed=cfg.seed)
    tsne = project_trajectories(
        runs, "pca+tsne", pca_components_before_tsne=cfg.tsne_pca_components, seed=cfg.seed
    )
    perturbed = [
        {
            "radius": r,
            "loss": loss,
            "pca_x": float(p[0]),
            "pca_y": float(p[1]),
            "tsne_x": float(t[0]),
            "tsne_y": float(t[1]),
        }
        for r, loss, p, t in zip(
            sample_radius, sample_loss.tolist(), pca.coords[0], tsne.coords[0], strict=True
        )
    ]
    perturbed_final = {
        "loss": final_loss[best],
        "pca_x": float(pca.coords[1][0, 0]),
        "pca_y": float(pca.coords[1][0, 1]),
        "tsne_x": float(tsne.coords[1][0, 0]),
        "tsne_y": float(tsne.coords[1][0, 1]),
    }

    # (d) the plane of two random filter-normalized directions, and the trajectory on it
    directions = random_directions(model, 2, filter_normalize=True, seed=cfg.seed)
    grid = np.linspace(-cfg.surface_extent, cfg.surface_extent, cfg.surface_points)
    surface = loss_surface(model, loss_fn, x, y, directions, grid)
    path = trajectories[best]  # (T, P)
    on_plane = project_onto_directions(path, theta, directions)  # (T, 2)
    offsets = (path - theta).to(torch.float64)  # (T, P)
    in_plane = torch.as_tensor(on_plane, device=device) @ torch.stack(directions).to(offsets)
    train_loss_at = {0: initial_loss[best].item()}
    train_loss_at.update({e: hist.train_loss[i][best] for i, e in enumerate(hist.epochs)})
    trajectory = [
        {
            "epoch": epoch,
            "a": float(ab[0]),
            "b": float(ab[1]),
            "train_loss": train_loss_at[epoch],
            "distance_to_final": offsets[t].norm().item(),
            "distance_in_plane": in_plane[t].norm().item(),
        }
        for t, (epoch, ab) in enumerate(zip(hist.snapshot_epochs, on_plane, strict=True))
    ]

    return {
        "model": {
            "widths": widths,
            "activation": cfg.activation,
            "params": count_params(template),
            "parameter_names": names,
        },
        "function": {
            "name": cfg.function,
            "formula": FUNCTIONS[cfg.function].formula,
            "domain": list(FUNCTIONS[cfg.function].domain),
            "n_points": cfg.n_points,
        },
        "seeds": seeds,
        "probed_seed": seeds[best],
        "runs": [
            {
                "seed": seed,
                "initial_train_loss": initial_loss[k].item(),
                "final_train_loss": final_loss[k],
                "final_test_loss": hist.final("test_loss")[k],
                "diverged": k in hist.diverged,
            }
            for k, seed in enumerate(seeds)
        ],
        "line": line,
        "per_parameter": per_parameter,
        "perturbed": perturbed,
        "perturbed_final": perturbed_final,
        "perturbed_variance": [float(v) for v in pca.explained_variance_ratio],
        "surface": {
            "a": surface.coords[0].tolist(),
            "b": surface.coords[1].tolist(),
            "loss": surface.loss.tolist(),  # [i][j] at a[i], b[j]
            "center_loss": surface.center_loss,
        },
        "trajectory": trajectory,
    }


def probed_run(results: dict) -> dict:
    return next(r for r in results["runs"] if r["seed"] == results["probed_seed"])


def model_text(results: dict) -> str:
    m = results["model"]
    return f"MLP {'-'.join(map(str, m['widths']))} {m['activation']}, {m['params']} params"

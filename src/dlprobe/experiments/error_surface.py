"""HW1-2 bonus: the error surface of a tiny network, seen four ways.

Protocol: train a tiny MLP (the presentation's 1-4-4-1, 33 parameters) on a 1-D function
from several seeds, keeping its weights every few epochs. Then, without training again:
(a) the loss on the straight line theta(alpha) = (1 - alpha) theta_0 + alpha theta_1 from
each run's initial to its final weights (Goodfellow et al. 2015); for the run with the
lowest final loss, (b) the loss when each parameter alone is moved, (c) the loss of many
Gaussian perturbations of the final weights at several radii, reduced to 2-D by PCA and
by PCA then t-SNE, and (d) the loss on the plane spanned by two random filter-normalized
directions through the final weights (Li et al. 2018), with the training trajectory
projected onto that plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.colors import LogNorm
from torch import nn
from torch.func import functional_call, vmap

from dlprobe.data import FUNCTIONS, function_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import check_common, model_seeds, parse_widths, require, sci
from dlprobe.experiments.plotting import COLORS, new_figure
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


# -- helpers ------------------------------------------------------------------------------
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


# -- protocol -----------------------------------------------------------------------------
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


# -- figures ------------------------------------------------------------------------------
def _probed(results: dict) -> dict:
    return next(r for r in results["runs"] if r["seed"] == results["probed_seed"])


def _model_text(results: dict) -> str:
    m = results["model"]
    return f"MLP {'-'.join(map(str, m['widths']))} {m['activation']}, {m['params']} params"


def figures(results: dict) -> dict:
    figs = {}
    formula = results["function"]["formula"]
    probed = results["probed_seed"]

    fig, ax = new_figure(width=7.0, height=4.5)
    for i, seed in enumerate(results["seeds"]):
        rows = [r for r in results["line"] if r["seed"] == seed]
        ax.plot(
            [r["alpha"] for r in rows],
            [r["train_loss"] for r in rows],
            color=COLORS[i % len(COLORS)],
            lw=2.0 if seed == probed else 1.2,
            label=f"seed {seed}" + (" (probed below)" if seed == probed else ""),
        )
    for a, text in ((0, "initial"), (1, "final")):
        ax.axvline(a, color="gray", ls="--", lw=1)
        ax.text(a, 0.02, f" {text}", transform=ax.get_xaxis_transform(), fontsize=8, color="gray")
    ax.set_yscale("log")
    ax.set(
        xlabel="α   (θ(α) = (1 − α) θ_initial + α θ_final)",
        ylabel="training loss (MSE)",
        title=f"Loss on the line from initial to final weights\n{_model_text(results)}, "
        f"{formula}, n={len(results['seeds'])} runs",
    )
    ax.legend(fontsize=8)
    figs["line-init-final"] = fig

    names = results["model"]["parameter_names"]
    ncols = int(np.ceil(np.sqrt(len(names))))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = new_figure(
        ncols=ncols, nrows=nrows, width=2.1, height=1.6, sharex=True, sharey=True, squeeze=False
    )
    final = _probed(results)["final_train_loss"]
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.axis("off")
            continue
        rows = [r for r in results["per_parameter"] if r["index"] == i]
        ax.plot([r["delta"] for r in rows], [r["loss"] for r in rows], color=COLORS[0], lw=1.2)
        ax.plot([0], [final], "*", color="red", ms=7)
        ax.set_yscale("log")
        ax.set_title(f"{names[i]} = {rows[0]['value']:.2f}", fontsize=8, pad=2)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("change δ", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss", fontsize=8)
    fig.suptitle(
        f"Training loss when one parameter alone is moved by δ (one panel per parameter, "
        f"n={len(names)}); * = final weights of seed {probed}\n{_model_text(results)}, {formula}",
        fontsize=10,
    )
    fig.tight_layout()
    figs["per-parameter"] = fig

    fig, axes = new_figure(ncols=2, width=5.5, height=4.8)
    rows = results["perturbed"]
    losses = np.array([r["loss"] for r in rows])
    norm = LogNorm(vmin=max(losses.min(), 1e-12), vmax=losses.max())
    end = results["perturbed_final"]
    evr = results["perturbed_variance"]
    radii = sorted({r["radius"] for r in rows})
    for ax, key, label in zip(axes, ("pca", "tsne"), ("PCA", "PCA then t-SNE"), strict=True):
        sc = ax.scatter(
            [r[f"{key}_x"] for r in rows],
            [r[f"{key}_y"] for r in rows],
            c=losses,
            norm=norm,
            cmap="viridis",
            s=10,
            lw=0,
        )
        ax.plot(
            end[f"{key}_x"],
            end[f"{key}_y"],
            "*",
            color="red",
            ms=14,
            mec="white",
            label="final weights",
        )
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set(
        xlabel=f"PC1 ({100 * evr[0]:.1f}% of variance)",
        ylabel=f"PC2 ({100 * evr[1]:.1f}% of variance)",
    )
    axes[1].set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    fig.colorbar(sc, ax=axes, label="training loss (log scale)")
    fig.suptitle(
        f"{len(rows)} Gaussian perturbations of seed {probed}'s final weights "
        f"(std {', '.join(f'{r:g}' for r in radii)} per parameter, "
        f"{len(rows) // len(radii)} each)"
    )
    figs["perturbed-samples"] = fig

    surf = results["surface"]
    a, b = np.array(surf["a"]), np.array(surf["b"])
    z = np.log10(np.clip(np.array(surf["loss"]), 1e-12, None)).T  # (b, a) for contour
    traj = results["trajectory"]
    fig, ax = new_figure(width=6.5, height=5.2)
    filled = ax.contourf(a, b, z, levels=30, cmap="viridis")
    ax.contour(a, b, z, levels=15, colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(filled, ax=ax, label="log10 training loss")
    ax.plot(
        [t["a"] for t in traj],
        [t["b"] for t in traj],
        ".-",
        color="red",
        ms=4,
        lw=1,
        label=f"training trajectory (projected; {len(traj)} snapshots)",
    )
    ax.plot(
        traj[0]["a"], traj[0]["b"], "o", color="red", mfc="white", ms=8, label="initial weights"
    )
    ax.plot(0, 0, "*", color="red", mec="white", ms=15, label="final weights")
    ax.set(
        xlabel="direction 1 (random, filter-normalized)",
        ylabel="direction 2 (random, filter-normalized)",
        title=f"Loss around seed {probed}'s final weights\n{_model_text(results)}, {formula}",
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14))
    figs["surface-contour"] = fig

    fig = new_figure(
        width=7.0, height=5.5, subplot_kw={"projection": "3d", "computed_zorder": False}
    )[0]
    ax = fig.axes[0]
    aa, bb = np.meshgrid(a, b)
    ax.plot_surface(aa, bb, z, cmap="viridis", lw=0, antialiased=True, alpha=0.95)
    ax.scatter(
        [0], [0], [np.log10(max(surf["center_loss"], 1e-12))], color="red", marker="*", s=120
    )
    ax.set(
        xlabel="direction 1",
        ylabel="direction 2",
        zlabel="log10 training loss",
        title=f"Loss surface around seed {probed}'s final weights (red *)\n"
        f"two random filter-normalized directions; {_model_text(results)}",
    )
    ax.view_init(elev=35, azim=-60)
    figs["surface-3d"] = fig
    return figs


# -- numbers ------------------------------------------------------------------------------
def _line_endpoints(results: dict) -> list[dict]:
    """Per run: loss at alpha 0 and 1, the line's maximum in [0, 1] and its minimum."""
    out = []
    for seed in results["seeds"]:
        rows = [r for r in results["line"] if r["seed"] == seed]
        inside = [r["train_loss"] for r in rows if 0 <= r["alpha"] <= 1]
        start = next(r["train_loss"] for r in rows if r["alpha"] == 0)
        end = next(r["train_loss"] for r in rows if r["alpha"] == 1)
        increasing = int(np.sum(np.diff(inside) > 1e-6 * np.asarray(inside[:-1])))
        out.append(
            {"seed": seed, "start": start, "end": end, "max": max(inside), "bumps": increasing}
        )
    return out


def _sharpest_parameters(results: dict) -> list[tuple[str, float]]:
    """Parameters by the loss increase at the largest move, largest first."""
    final = _probed(results)["final_train_loss"]
    worst = {}
    for r in results["per_parameter"]:
        worst[r["name"]] = max(worst.get(r["name"], 0.0), r["loss"] - final)
    return sorted(worst.items(), key=lambda kv: -kv[1])


def _loss_by_radius(results: dict) -> dict[float, float]:
    out = {}
    for radius in sorted({r["radius"] for r in results["perturbed"]}):
        out[radius] = float(
            np.median([r["loss"] for r in results["perturbed"] if r["radius"] == radius])
        )
    return out


def summarize(results: dict) -> dict:
    probed = _probed(results)
    sharpest = _sharpest_parameters(results)
    return {
        "params": results["model"]["params"],
        "final train loss, probed seed": probed["final_train_loss"],
        "final train loss, median over runs": float(
            np.median([r["final_train_loss"] for r in results["runs"]])
        ),
        "runs whose line from init to final never rises": sum(
            e["bumps"] == 0 for e in _line_endpoints(results)
        ),
        "most sensitive parameter (max loss increase)": [sharpest[0][0], sharpest[0][1]],
        "median loss of perturbed weights, by radius": [
            [r, v] for r, v in _loss_by_radius(results).items()
        ],
        "surface: min / max loss on the plane": [
            float(np.min(results["surface"]["loss"])),
            float(np.max(results["surface"]["loss"])),
        ],
    }


def observations(results: dict) -> list[str]:
    n = len(results["seeds"])
    probed = _probed(results)
    ends = _line_endpoints(results)
    monotone = sum(e["bumps"] == 0 for e in ends)
    lines = [
        f"{results['model']['params']}-parameter model on {results['function']['formula']}: "
        f"final training loss {sci(min(r['final_train_loss'] for r in results['runs']))}-"
        f"{sci(max(r['final_train_loss'] for r in results['runs']))} over {n} runs; seed "
        f"{results['probed_seed']} ({sci(probed['final_train_loss'])}) is probed.",
        f"On the straight line from initial to final weights the loss never rises in "
        f"{monotone} of {n} runs; the largest excess of the line over its starting loss in "
        f"[0, 1] is {sci(max(e['max'] - e['start'] for e in ends))}.",
    ]
    sharpest = _sharpest_parameters(results)
    final = probed["final_train_loss"]
    flat = [name for name, inc in sharpest if inc < 0.1 * final]
    lines.append(
        f"Moving one parameter alone by up to ±{max(r['delta'] for r in results['per_parameter']):g}: "
        f"{sharpest[0][0]} raises the loss most (by {sci(sharpest[0][1])}), "
        f"{sharpest[1][0]} next ({sci(sharpest[1][1])}); {len(flat)} of {len(sharpest)} "
        f"parameters change it by less than 10% of the final loss."
    )
    by_radius = _loss_by_radius(results)
    k = len(results["perturbed"]) // len(by_radius)
    lines.append(
        "Median loss of Gaussian perturbations of the final weights: "
        + ", ".join(f"{v:.3g} at std {r:g}" for r, v in by_radius.items())
        + f" (n={k} each; final loss {sci(final)})."
    )
    traj = results["trajectory"]
    captured = traj[0]["distance_in_plane"] / max(traj[0]["distance_to_final"], 1e-30)
    surface = results["surface"]
    loss = np.array(surface["loss"])
    i, j = np.unravel_index(np.argmin(loss), loss.shape)
    lines.append(
        f"On the {loss.shape[0]}x{loss.shape[1]} plane of two random filter-normalized "
        f"directions the loss spans {sci(loss.min())}-{sci(loss.max())}; its lowest grid "
        f"point is at ({surface['a'][i]:.2f}, {surface['b'][j]:.2f}), the final weights at "
        f"(0, 0) have {sci(surface['center_loss'])}. The plane holds {100 * captured:.0f}% of "
        "the length of the displacement from initial to final weights, so the projected "
        "trajectory shows only part of the path."
    )
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    f = results["function"]
    return [
        ("model", _model_text(results)),
        (
            "function",
            f"{f['formula']} on [{f['domain'][0]:g}, {f['domain'][1]:g}], {f['n_points']} points",
        ),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}, full batch, {cfg.epochs} epochs"),
        (
            "seeds",
            f"{cfg.seeds} runs (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}) as one population; "
            f"the lowest final loss (seed {results['probed_seed']}) is probed",
        ),
        (
            "line",
            f"{cfg.alpha_points} alphas in [{cfg.alpha_range[0]:g}, {cfg.alpha_range[1]:g}], "
            "no training in between",
        ),
        (
            "per parameter",
            f"{cfg.param_points} moves in [-{cfg.param_range:g}, {cfg.param_range:g}]",
        ),
        (
            "perturbations",
            f"{cfg.samples_per_radius} Gaussian samples per std in "
            f"{', '.join(f'{r:g}' for r in cfg.sample_radii)}; PCA, and PCA to "
            f"{cfg.tsne_pca_components} dims then t-SNE",
        ),
        (
            "surface",
            f"{cfg.surface_points}x{cfg.surface_points} grid on [-{cfg.surface_extent:g}, "
            f"{cfg.surface_extent:g}]^2 along two random filter-normalized directions "
            f"(seed {cfg.seed}); biases not moved",
        ),
        (
            "trajectory",
            f"weights every {cfg.snapshot_every_epochs} epochs, least-squares projection",
        ),
    ]


EXPERIMENT = Experiment(
    id="error-surface",
    homework="HW1-2 bonus",
    title="The error surface of a tiny network",
    question="What does the loss look like around and between the initial and final weights "
    "of a tiny network: along the straight line, per parameter, under random perturbations, "
    "and on a 2-D slice?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "line-init-final": "training loss at θ(α) = (1 − α) θ_initial + α θ_final for every "
        "run (log scale); no training between the points",
        "per-parameter": "training loss when a single parameter is moved by δ and all others "
        "stay at their final values (log scale, shared axes); one panel per parameter",
        "perturbed-samples": "Gaussian perturbations of the final weights at several radii, "
        "reduced to 2-D by PCA (left) and PCA then t-SNE (right), coloured by training loss "
        "(log colour scale)",
        "surface-contour": "log10 training loss on the plane of two random filter-normalized "
        "directions through the final weights, with the training trajectory projected on it",
        "surface-3d": "the same plane as a 3-D surface (height: log10 training loss)",
    },
    quick_minutes=0.2,
    full_differs="quick trains 4 seeds for 2000 epochs and draws 150 samples per radius; "
    "full: 8 seeds, 10 000 epochs, 500 samples per radius, a 61x61 surface.",
)

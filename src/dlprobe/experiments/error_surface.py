"""HW1-2 bonus: the error surface of a tiny network, seen four ways.

Protocol: train a tiny MLP (the presentation's 1-4-4-1, 33 parameters) on a 1-D function
from several seeds, keeping its weights every few epochs. Then, without training again:
(a) the loss on the line (1 - alpha) theta_0 + alpha theta_1 from each run's initial to
its final weights (Goodfellow et al. 2015); for the run with the lowest final loss, (b) the
loss when each parameter alone is moved, (c) the loss of Gaussian perturbations of the
final weights at several radii, reduced to 2-D by PCA and by PCA then t-SNE, and (d) the
loss on the plane of two random filter-normalized directions through the final weights
(Li et al. 2018), with the training trajectory projected onto it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from matplotlib.colors import LogNorm
from torch import nn
from torch.func import functional_call, vmap

from dlprobe.data import FUNCTIONS
from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    Experiment,
    FunctionName,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    check_batch_sizes,
    column,
    finite,
    mlp_population,
    new_figure,
    parse_widths,
    require,
    sci,
)
from dlprobe.experiments.kit.trajectories import (
    check_snapshots,
    initial_metrics,
    model_to_vector,
    snapshot_metrics,
    vector_to_model,
    weight_trajectories,
)
from dlprobe.measure.interpolate import interpolate
from dlprobe.measure.surface import loss_surface, project_onto_directions, random_directions
from dlprobe.measure.trajectories import project_trajectories
from dlprobe.models import mlp_param_count
from dlprobe.train import TrainConfig, default_loss

MAX_PARAMS = 64  # the per-parameter figure draws one panel per parameter
AtLeast2, AtLeast3 = Annotated[int, Bound(ge=2)], Annotated[int, Bound(ge=3)]


@dataclass(frozen=True)
class Config:
    function: FunctionName = "sinc"  # target function (see `dlprobe datasets`)
    widths: str = "1-4-4-1"  # layer widths of the tiny MLP (33 parameters; at most 64)
    activation: Activation = "relu"  # hidden activation
    n_points: AtLeast2 = 64  # training points, evenly spaced on the function's domain
    seeds: PosInt = 4  # training runs (one population); the lowest final loss is probed
    seed: Seed = 0  # base seed: run i uses seed + i; also seeds the samples and directions
    # full batch; weights and loss every snapshot_every_epochs: the trajectory on the plane
    train: TrainConfig = TrainConfig(
        lr=1e-2, epochs=2000, batch_size=0, eval_every_epochs=50, snapshot_every_epochs=50
    )
    alpha_range: tuple[float, float] = (-0.25, 1.25)  # alpha from..to on the init-final line
    alpha_points: AtLeast2 = 61  # alphas on the line (0 and 1 are always included)
    param_range: PosFloat = 1.0  # each parameter alone moved by -this..+this (absolute units)
    param_points: AtLeast3 = 41  # moves per parameter (odd: 0 is on the grid)
    # std of the Gaussian noise added to every parameter (one set of samples per value)
    sample_radii: tuple[PosFloat, ...] = (0.01, 0.03, 0.1, 0.3)
    samples_per_radius: AtLeast2 = 150  # perturbed weight vectors per radius
    tsne_pca_components: AtLeast2 = 10  # PCA dimensions fed to t-SNE
    surface_extent: PosFloat = 1.0  # plane coordinates span -this..+this (filter-normalized)
    surface_points: AtLeast3 = 41  # grid points per direction of the plane

    def check(self) -> None:
        params = mlp_param_count(parse_widths(self.widths), self.activation)
        require(
            params <= MAX_PARAMS,
            f"the model {self.widths} has {params} parameters; this experiment draws one "
            f"panel per parameter, so use a tiny model (<= {MAX_PARAMS}, e.g. 1-4-4-1)",
        )
        check_snapshots(self.train)
        check_batch_sizes([self.train.batch_size], self.n_points, "train.batch_size")
        lo, hi = self.alpha_range
        require(lo <= 0 and hi >= 1, f"alpha_range must contain [0, 1], got {self.alpha_range}")
        require(
            self.param_points % 2 == 1,
            f"param_points must be odd (0 on the grid), got {self.param_points}",
        )
        require(len(self.sample_radii) >= 1, "give at least one sample radius")


PROFILES = {
    "smoke": {
        "seeds": 2,
        "train.epochs": 100,
        "train.eval_every_epochs": 25,
        "train.snapshot_every_epochs": 25,
        "alpha_points": 7,
        "param_points": 5,
        "sample_radii": (0.03, 0.3),
        "samples_per_radius": 10,
        "surface_points": 7,
    },
    "full": {
        "seeds": 8,
        "train.epochs": 10000,
        "train.eval_every_epochs": 200,
        "train.snapshot_every_epochs": 200,
        "samples_per_radius": 500,
        "surface_points": 61,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.function(cfg.function, cfg.n_points)
    widths = parse_widths(cfg.widths)
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    start = initial_metrics(pop, data)
    hist = ctx.train("tiny", pop, data, cfg.train)
    trajectories = weight_trajectories(hist).to(ctx.device)  # (K, T, P)
    final_loss = hist.final("train_loss")
    finite_runs = [k for k in range(pop.size) if k not in hist.diverged]
    require(bool(finite_runs), "every run diverged; lower lr")
    best = min(finite_runs, key=lambda k: final_loss[k])
    ctx.log(f"probing seed {pop.seeds[best]} (final training loss {final_loss[best]:.3g})")
    template = pop.model(0)
    model = vector_to_model(template, trajectories[best, -1])  # the probed final weights
    names = parameter_names(template)
    at = snapshot_metrics(hist, start)
    path_loss = [at[epoch]["train_loss"][best] for epoch in hist.snapshot_epochs]
    runs = [
        {
            "seed": seed,
            "initial_train_loss": start["train_loss"][k],
            "final_train_loss": final_loss[k],
            "final_test_loss": hist.final("test_loss")[k],
            "diverged": k in hist.diverged,
        }
        for k, seed in enumerate(pop.seeds)
    ]
    f = FUNCTIONS[cfg.function]
    return {
        "model": {
            "widths": widths,
            "activation": cfg.activation,
            "params": len(names),
            "parameter_names": names,
        },
        "function": {
            "name": cfg.function,
            "formula": f.formula,
            "domain": list(f.domain),
            "n_points": cfg.n_points,
        },
        "seeds": pop.seeds,
        "probed_seed": pop.seeds[best],
        "runs": runs,
        "line": line_rows(cfg, template, trajectories, pop.seeds, data),
        "per_parameter": per_parameter_rows(cfg, model, names, data),
        **perturbed_rows(cfg, model, final_loss[best], data),
        **plane_rows(cfg, model, trajectories[best], hist.snapshot_epochs, path_loss, data),
    }


def parameter_names(model: nn.Module) -> list[str]:
    """``W2[i,j]`` / ``b2[i]`` for every scalar parameter, in flat-vector order."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = []
    for pname, p in model.named_parameters():
        module, kind = pname.rsplit(".", 1)
        symbol = f"{'W' if kind == 'weight' else 'b'}{linears.index(module) + 1}"
        names += [f"{symbol}[{','.join(map(str, idx))}]" for idx in np.ndindex(*p.shape)]
    return names


def batch_losses(model: nn.Module, thetas: torch.Tensor, x, y, loss_fn) -> torch.Tensor:
    """Loss (N,) of ``model``'s architecture at each flat parameter vector of thetas (N, P)."""
    shapes = [(n, p.shape, p.numel()) for n, p in model.named_parameters()]

    def loss_at(theta: torch.Tensor) -> torch.Tensor:
        parts = theta.split([numel for _, _, numel in shapes])
        params = {n: t.reshape(shape) for (n, shape, _), t in zip(shapes, parts, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    with torch.no_grad():
        return torch.cat([vmap(loss_at)(chunk) for chunk in thetas.split(1024)])


def line_rows(cfg: Config, template, trajectories: torch.Tensor, seeds, data) -> list[dict]:
    """(a) Train and test loss on the line from each run's initial to its final weights."""
    loss_fn = default_loss(data)
    alphas = np.linspace(*cfg.alpha_range, cfg.alpha_points)
    alphas = sorted({round(float(a), 10) for a in alphas} | {0.0, 1.0})

    def evaluate(model: nn.Module) -> dict:
        model.eval()
        with torch.no_grad():
            return {
                "train_loss": loss_fn(model(data.x_train), data.y_train).item(),
                "test_loss": loss_fn(model(data.x_test), data.y_test).item(),
            }

    ends = [[vector_to_model(template, t[i]) for i in (0, -1)] for t in trajectories]
    return [
        {"seed": seed, **r}
        for seed, (start, end) in zip(seeds, ends, strict=True)
        for r in interpolate(start, end, alphas, evaluate)
    ]


def per_parameter_rows(cfg: Config, model: nn.Module, names: list[str], data) -> list[dict]:
    """(b) The loss when one parameter alone moves by delta around the final weights."""
    theta = model_to_vector(model)  # (P,)
    deltas = torch.linspace(-cfg.param_range, cfg.param_range, cfg.param_points)
    deltas[cfg.param_points // 2] = 0.0  # exactly on the final weights
    eye = torch.eye(theta.numel(), device=theta.device, dtype=theta.dtype)  # (P, P)
    moved = theta + deltas.to(theta)[None, :, None] * eye[:, None, :]  # (P, G, P)
    x, y, loss_fn = data.x_train, data.y_train, default_loss(data)
    losses = batch_losses(model, moved.reshape(-1, theta.numel()), x, y, loss_fn)
    losses = losses.reshape(theta.numel(), -1).tolist()  # [P][G]
    return [
        {"index": i, "name": names[i], "value": theta[i].item(), "delta": d, "loss": losses[i][j]}
        for i in range(theta.numel())
        for j, d in enumerate(deltas.tolist())
    ]


def perturbed_rows(cfg: Config, model: nn.Module, final_loss: float, data) -> dict:
    """(c) Gaussian perturbations of the final weights at several radii, reduced to 2-D."""
    theta = model_to_vector(model).cpu()  # (P,)
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = torch.randn(len(cfg.sample_radii), cfg.samples_per_radius, theta.numel(), generator=gen)
    radii = torch.tensor(cfg.sample_radii)[:, None, None]  # (R, 1, 1)
    samples = (theta + radii * noise.to(theta.dtype)).reshape(-1, theta.numel())  # (N, P)
    x, y = data.x_train, data.y_train
    losses = batch_losses(model, samples.to(x.device), x, y, default_loss(data)).tolist()
    runs = [samples, theta[None]]  # the final point as its own "run" of one
    projections = {
        "pca": project_trajectories(runs, method="pca", seed=cfg.seed),
        "tsne": project_trajectories(
            runs, "pca+tsne", pca_components_before_tsne=cfg.tsne_pca_components, seed=cfg.seed
        ),
    }

    def coords(run: int, i: int) -> dict:  # pca_x, pca_y, tsne_x, tsne_y of one point
        return {
            f"{key}_{axis}": float(proj.coords[run][i, j])
            for key, proj in projections.items()
            for j, axis in enumerate("xy")
        }

    radius = radii.expand(-1, cfg.samples_per_radius, 1).reshape(-1).tolist()  # (N,)
    return {
        "perturbed": [
            {"radius": r, "loss": loss, **coords(0, i)}
            for i, (r, loss) in enumerate(zip(radius, losses, strict=True))
        ],
        "perturbed_final": {"loss": final_loss, **coords(1, 0)},
        "perturbed_variance": [float(v) for v in projections["pca"].explained_variance_ratio],
    }


def plane_rows(cfg: Config, model: nn.Module, path, epochs, path_loss, data) -> dict:
    """(d) The loss on a random filter-normalized plane, and the trajectory (T, P) on it."""
    theta = model_to_vector(model)  # (P,)
    directions = random_directions(model, 2, filter_normalize=True, seed=cfg.seed)
    grid = np.linspace(-cfg.surface_extent, cfg.surface_extent, cfg.surface_points)
    surface = loss_surface(model, default_loss(data), data.x_train, data.y_train, directions, grid)
    on_plane = project_onto_directions(path, theta, directions)  # (T, 2)
    offsets = (path - theta).to(torch.float64)  # (T, P)
    in_plane = torch.as_tensor(on_plane, device=theta.device) @ torch.stack(directions).to(offsets)
    trajectory = [
        {
            "epoch": epoch,
            "a": float(ab[0]),
            "b": float(ab[1]),
            "train_loss": path_loss[t],
            "distance_to_final": offsets[t].norm().item(),
            "distance_in_plane": in_plane[t].norm().item(),
        }
        for t, (epoch, ab) in enumerate(zip(epochs, on_plane, strict=True))
    ]
    return {
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


def figures(results: dict) -> dict:
    formula, probed = results["function"]["formula"], results["probed_seed"]
    what = f"{model_text(results)}, {formula}"
    fig, ax = new_figure(width=7.0, height=4.5)
    for i, seed in enumerate(results["seeds"]):
        rows = [r for r in results["line"] if r["seed"] == seed]
        ax.plot(column(rows, "alpha"), column(rows, "train_loss"), color=COLORS[i % len(COLORS)],
                lw=2.0 if seed == probed else 1.2,
                label=f"seed {seed}" + (" (probed below)" if seed == probed else ""))  # fmt: skip
    for a, text in ((0, "initial"), (1, "final")):
        ax.axvline(a, color="gray", ls="--", lw=1)
        ax.text(a, 0.02, f" {text}", transform=ax.get_xaxis_transform(), fontsize=8, color="gray")
    ax.set_yscale("log")
    ax.set(xlabel="α   (θ(α) = (1 − α) θ_initial + α θ_final)", ylabel="training loss (MSE)",
           title=f"Loss on the line from initial to final weights\n{what}, "
           f"n={len(results['seeds'])} runs")  # fmt: skip
    ax.legend(fontsize=8)
    figs = {"line-init-final": fig}

    names = results["model"]["parameter_names"]
    ncols = int(np.ceil(np.sqrt(len(names))))
    fig, axes = new_figure(ncols=ncols, nrows=int(np.ceil(len(names) / ncols)), width=2.1,
                           height=1.6, sharex=True, sharey=True, squeeze=False)  # fmt: skip
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.axis("off")
            continue
        rows = [r for r in results["per_parameter"] if r["index"] == i]
        ax.plot(column(rows, "delta"), column(rows, "loss"), color=COLORS[0], lw=1.2)
        ax.plot([0], [probed_run(results)["final_train_loss"]], "*", color="red", ms=7)
        ax.set_yscale("log")
        ax.set_title(f"{names[i]} = {rows[0]['value']:.2f}", fontsize=8, pad=2)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("change δ", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss", fontsize=8)
    fig.suptitle(
        f"Training loss when one parameter alone is moved by δ (one panel per parameter, "
        f"n={len(names)}); * = final weights of seed {probed}\n{what}",
        fontsize=10,
    )
    fig.tight_layout()
    figs["per-parameter"] = fig

    fig, axes = new_figure(ncols=2, width=5.5, height=4.8)
    rows, end, evr = results["perturbed"], results["perturbed_final"], results["perturbed_variance"]
    losses = column(rows, "loss")  # (N,)
    norm = LogNorm(vmin=max(np.nanmin(losses), 1e-12), vmax=np.nanmax(losses))
    radii = sorted({r["radius"] for r in rows})
    for ax, key, label in zip(axes, ("pca", "tsne"), ("PCA", "PCA then t-SNE"), strict=True):
        sc = ax.scatter(column(rows, f"{key}_x"), column(rows, f"{key}_y"), c=losses, norm=norm,
                        cmap="viridis", s=10, lw=0)  # fmt: skip
        ax.plot(end[f"{key}_x"], end[f"{key}_y"], "*", color="red", ms=14, mec="white",
                label="final weights")  # fmt: skip
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set(xlabel=f"PC1 ({100 * evr[0]:.1f}% of variance)",
                ylabel=f"PC2 ({100 * evr[1]:.1f}% of variance)")  # fmt: skip
    axes[1].set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    fig.colorbar(sc, ax=axes, label="training loss (log scale)")
    fig.suptitle(
        f"{len(rows)} Gaussian perturbations of seed {probed}'s final weights "
        f"(std {', '.join(f'{r:g}' for r in radii)} per parameter, "
        f"{len(rows) // len(radii)} each)"
    )
    figs["perturbed-samples"] = fig
    figs.update(_surface_figures(results, what))
    return figs


def _surface_figures(results: dict, what: str) -> dict:
    surf, traj, probed = results["surface"], results["trajectory"], results["probed_seed"]
    a, b = np.array(surf["a"]), np.array(surf["b"])
    loss = np.array(surf["loss"], dtype=float)  # (a, b); None (non-finite) -> NaN
    z = np.log10(np.clip(loss, 1e-12, None)).T  # (b, a) for contour
    fig, ax = new_figure(width=6.5, height=5.2)
    filled = ax.contourf(a, b, z, levels=30, cmap="viridis")
    ax.contour(a, b, z, levels=15, colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(filled, ax=ax, label="log10 training loss")
    ax.plot(column(traj, "a"), column(traj, "b"), ".-", color="red", ms=4, lw=1,
            label=f"training trajectory (projected; {len(traj)} snapshots)")  # fmt: skip
    ax.plot(traj[0]["a"], traj[0]["b"], "o", color="red", mfc="white", ms=8,
            label="initial weights")  # fmt: skip
    ax.plot(0, 0, "*", color="red", mec="white", ms=15, label="final weights")
    ax.set(xlabel="direction 1 (random, filter-normalized)",
           ylabel="direction 2 (random, filter-normalized)",
           title=f"Loss around seed {probed}'s final weights\n{what}")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14))
    figs = {"surface-contour": fig}

    fig, _ = new_figure(width=7.0, height=5.5, subplot_kw={"projection": "3d", "computed_zorder": False})  # fmt: skip
    ax = fig.axes[0]
    aa, bb = np.meshgrid(a, b)
    ax.plot_surface(aa, bb, z, cmap="viridis", lw=0, antialiased=True, alpha=0.95)
    center = np.log10(max(surf["center_loss"], 1e-12))
    ax.scatter([0], [0], [center], color="red", marker="*", s=120)
    ax.set(xlabel="direction 1", ylabel="direction 2", zlabel="log10 training loss",
           title=f"Loss surface around seed {probed}'s final weights (red *)\n"
           f"two random filter-normalized directions; {model_text(results)}")  # fmt: skip
    ax.view_init(elev=35, azim=-60)
    figs["surface-3d"] = fig
    return figs


def _line_endpoints(results: dict) -> list[dict]:
    """Per run: the loss at alpha 0, the line's maximum in [0, 1], and how often it rises."""
    out = []
    for seed in results["seeds"]:
        rows = [r for r in results["line"] if r["seed"] == seed and 0 <= r["alpha"] <= 1]
        inside = column(rows, "train_loss")  # alpha 0 first
        rises = int(np.sum(np.diff(inside) > 1e-6 * inside[:-1]))
        out.append({"seed": seed, "start": inside[0], "max": np.nanmax(inside), "bumps": rises})
    return out


def _sharpest_parameters(results: dict) -> list[tuple[str, float]]:
    """Parameters by the loss increase at the largest move, largest first."""
    final = probed_run(results)["final_train_loss"]
    worst = {}
    for r in results["per_parameter"]:
        if r["loss"] is not None:  # a non-finite loss is saved as null
            worst[r["name"]] = max(worst.get(r["name"], 0.0), r["loss"] - final)
    return sorted(worst.items(), key=lambda kv: -kv[1])


def notes(results: dict) -> Notes:
    n, probed, runs = len(results["seeds"]), probed_run(results), results["runs"]
    final, ends = probed["final_train_loss"], _line_endpoints(results)
    sharpest = _sharpest_parameters(results)
    rows = results["perturbed"]
    by_radius = {
        radius: float(np.median(finite(r["loss"] for r in rows if r["radius"] == radius)))
        for radius in sorted({r["radius"] for r in rows})
    }
    surface = results["surface"]
    loss = np.array(surface["loss"], dtype=float)  # (a, b)
    monotone = sum(e["bumps"] == 0 for e in ends)
    summary = {
        "params": results["model"]["params"],
        "final train loss, probed seed": final,
        "final train loss, median over runs": float(
            np.median(finite(column(runs, "final_train_loss")))
        ),
        "runs whose line from init to final never rises": monotone,
        "most sensitive parameter (max loss increase)": [sharpest[0][0], sharpest[0][1]],
        "median loss of perturbed weights, by radius": [[r, v] for r, v in by_radius.items()],
        "surface: min / max loss on the plane": [float(np.nanmin(loss)), float(np.nanmax(loss))],
    }
    finals = finite(column(runs, "final_train_loss"))
    flat = [name for name, rise in sharpest if rise < 0.1 * final]
    traj = results["trajectory"]
    captured = traj[0]["distance_in_plane"] / max(traj[0]["distance_to_final"], 1e-30)
    i, j = np.unravel_index(np.nanargmin(loss), loss.shape)
    lines = [
        f"{results['model']['params']}-parameter model on {results['function']['formula']}: "
        f"final training loss {sci(finals.min())}-{sci(finals.max())} over {n} runs; seed "
        f"{results['probed_seed']} ({sci(final)}) is probed.",
        f"On the straight line from initial to final weights the loss never rises in "
        f"{monotone} of {n} runs; the largest excess of the line over its starting loss in "
        f"[0, 1] is {sci(max(e['max'] - e['start'] for e in ends))}.",
        f"Moving one parameter alone by up to ±{max(r['delta'] for r in results['per_parameter']):g}: "
        f"{sharpest[0][0]} raises the loss most (by {sci(sharpest[0][1])}), "
        f"{sharpest[1][0]} next ({sci(sharpest[1][1])}); {len(flat)} of {len(sharpest)} "
        f"parameters change it by less than 10% of the final loss.",
        "Median loss of Gaussian perturbations of the final weights: "
        + ", ".join(f"{v:.3g} at std {r:g}" for r, v in by_radius.items())
        + f" (n={len(rows) // len(by_radius)} each; final loss {sci(final)}).",
        f"On the {loss.shape[0]}x{loss.shape[1]} plane of two random filter-normalized "
        f"directions the loss spans {sci(np.nanmin(loss))}-{sci(np.nanmax(loss))}; its lowest "
        f"grid point is at ({surface['a'][i]:.2f}, {surface['b'][j]:.2f}), the final weights at "
        f"(0, 0) have {sci(surface['center_loss'])}. The plane holds {100 * captured:.0f}% of "
        "the length of the displacement from initial to final weights, so the projected "
        "trajectory shows only part of the path.",
    ]
    f = results["function"]
    setup = {"model": model_text(results), "function": f["formula"], "domain": f["domain"],
             "training points": f["n_points"], "probed seed": results["probed_seed"]}  # fmt: skip
    return Notes(summary, lines, [("Model and data", [setup]), ("Runs", runs)])


EXPERIMENT = Experiment(
    id="error-surface",
    item="HW1-2 bonus",
    part="bonus",
    rank=1,
    title="The error surface of a tiny network",
    question="What does the loss look like around and between the initial and final weights "
    "of a tiny network: along the straight line, per parameter, under random perturbations, "
    "and on a 2-D slice?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
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

"""Training seen as a trajectory through the loss landscape: metrics from epoch 0 on, weight
snapshots, models rebuilt from flat weight vectors, distances between final weights, the
loss around a trajectory as tidy rows (on the line from its start to its end, per
parameter, under Gaussian noise, on a plane), and how all of it is drawn (actual-task,
optimization-trajectory, error-surface)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import LogNorm
from torch import nn

from dlprobe.config import require
from dlprobe.data import Dataset
from dlprobe.measure.flat import (
    gaussian_perturbations,
    one_parameter_losses,
    parameter_names,
    plane_shadow,
)
from dlprobe.measure.interpolate import interpolate
from dlprobe.measure.surface import loss_surface, random_directions
from dlprobe.measure.trajectories import project_trajectories
from dlprobe.models import MLP
from dlprobe.train import History, Population, TrainConfig, default_loss, evaluate_population

from .plotting import COLORS, new_figure, no_data
from .stats import group_rows


def check_snapshots(train: TrainConfig, group: str = "train") -> None:
    """Snapshots every n epochs, the final weights among them, each with its metrics."""
    every, evals = train.snapshot_every_epochs, train.eval_every_epochs
    require(
        every >= 1 and train.epochs % every == 0,
        f"{group}.epochs ({train.epochs}) must be a multiple of snapshot_every_epochs "
        f"({every} >= 1) so that the final weights are a snapshot",
    )
    require(
        evals >= 1 and every % evals == 0,
        f"{group}.snapshot_every_epochs ({every}) must be a multiple of eval_every_epochs "
        f"({evals}): every snapshot needs its loss",
    )


def initial_metrics(pop: Population, data: Dataset) -> dict[str, list[float]]:
    """Metric name (as History names them) -> value per model (K,) before any training."""
    out = {}
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        loss, accuracy = evaluate_population(pop, x, y, default_loss(data))
        out[f"{split}_loss"] = loss.tolist()
        if accuracy is not None:
            out[f"{split}_accuracy"] = accuracy.tolist()
    return out


def snapshot_metrics(hist: History, initial: dict) -> dict[int, dict[str, list[float]]]:
    """Snapshot epoch -> metric -> value per model: epoch 0 from ``initial``, then ``hist``."""
    at = {0: initial}
    for i, epoch in enumerate(hist.epochs):
        at[epoch] = {name: getattr(hist, name)[i] for name in initial}
    return {epoch: at[epoch] for epoch in hist.snapshot_epochs}


def snapshot_rows(hist: History, initial: dict, name=lambda k: f"model {k}") -> list[dict]:
    """One row per model and snapshot epoch: ``{"event": name(k), "seed", "epoch", metrics}``,
    the metrics of ``snapshot_metrics`` (NaN after a model diverged)."""
    at = snapshot_metrics(hist, initial)
    return [
        {"event": name(k), "seed": seed, "epoch": e, **{m: v[k] for m, v in at[e].items()}}
        for k, seed in enumerate(hist.seeds)
        for e in hist.snapshot_epochs
    ]


def projection_rows(
    trajectories: list[torch.Tensor],
    names: list[str],
    epochs,
    method: str,
    seed: int = 0,
    tsne_pca_components: int = 10,
    **tag,
) -> tuple[list[dict], dict]:
    """Every snapshot of every trajectory (T, P) in ONE 2-D basis (``project_trajectories``):
    rows ``{**tag, "method", "event", "epoch", "x", "y"}`` and the projection's
    ``{**tag, "method", "explained_variance_ratio"}``."""
    proj = project_trajectories(trajectories, method=method, seed=seed,
                                pca_components_before_tsne=tsne_pca_components)  # fmt: skip
    tag = {**tag, "method": method}
    coords = [
        {**tag, "event": name, "epoch": epoch, "x": p[0], "y": p[1]}
        for name, xy in zip(names, proj.coords, strict=True)
        for epoch, p in zip(epochs, xy.tolist(), strict=True)
    ]
    return coords, {**tag, "explained_variance_ratio": proj.explained_variance_ratio.tolist()}


def weight_trajectories(hist: History) -> torch.Tensor:
    """(K, T, P): every model's flat weights at every snapshot epoch."""
    return torch.stack(hist.snapshots, dim=1)


def model_to_vector(model: nn.Module) -> torch.Tensor:
    """(P,): the model's parameters as one flat vector, in parameters() order, detached."""
    return nn.utils.parameters_to_vector(model.parameters()).detach()


def vector_to_model(template: MLP, vector: torch.Tensor) -> MLP:
    """A copy of ``template`` whose parameters are the flat vector (P,) (parameters() order)."""
    model = MLP(template.widths, template.activation).to(vector.device, vector.dtype)
    nn.utils.vector_to_parameters(vector, model.parameters())
    return model


def line_rows(template: MLP, weights: torch.Tensor, seeds, data: Dataset, alphas) -> list[dict]:
    """Train and test loss at (1 - alpha) start + alpha end of each trajectory (T, P) of
    ``weights`` (K, T, P), no training between: rows ``{"seed", "alpha", "train_loss",
    "test_loss"}``."""
    loss_fn = default_loss(data)
    splits = (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test))

    def evaluate(model) -> dict:
        with torch.no_grad():
            return {f"{split}_loss": loss_fn(model(x), y).item() for split, x, y in splits}

    ends = [[vector_to_model(template, t[i]).eval() for i in (0, -1)] for t in weights]
    return [{"seed": seed, **r} for seed, (start, end) in zip(seeds, ends, strict=True)
            for r in interpolate(start, end, alphas, evaluate)]  # fmt: skip


def per_parameter_rows(model: nn.Module, data: Dataset, deltas: torch.Tensor) -> list[dict]:
    """The training loss when one parameter alone moves by each of ``deltas`` (G,): rows
    ``{"index", "name", "value", "delta", "loss"}``, parameter by parameter."""
    losses = one_parameter_losses(model, default_loss(data), data.x_train, data.y_train, deltas)
    theta, losses = model_to_vector(model), losses.tolist()  # (P,), [P][G]
    return [{"index": i, "name": name, "value": theta[i].item(), "delta": d, "loss": losses[i][j]}
            for i, name in enumerate(parameter_names(model))
            for j, d in enumerate(deltas.tolist())]  # fmt: skip


def perturbed_rows(model: nn.Module, data: Dataset, radii, per_radius: int, seed: int = 0,
                   tsne_dims: int = 10) -> dict:  # fmt: skip
    """The training loss of ``per_radius`` Gaussian perturbations of the model's weights per
    radius (std per parameter), embedded in 2-D (``embedding_rows``) with the weights:
    ``perturbed`` rows ``{"radius", "loss", "pca_x", ...}``, ``perturbed_center`` (the
    unperturbed point's coordinates) and the PCA's ``perturbed_variance`` ratios."""
    x, y = data.x_train, data.y_train
    points, radius, loss = gaussian_perturbations(model, default_loss(data), x, y, radii,
                                                  per_radius, seed)  # fmt: skip
    xy, center, variance = embedding_rows(points, model_to_vector(model).cpu(), seed, tsne_dims)
    rows = zip(radius.tolist(), loss.tolist(), xy, strict=True)
    return {"perturbed": [{"radius": r, "loss": v, **p} for r, v, p in rows],
            "perturbed_center": center, "perturbed_variance": variance}  # fmt: skip


def plane_rows(model: nn.Module, data: Dataset, grid, path, epochs, losses, seed=0) -> dict:
    """The training loss on the ``grid`` x ``grid`` plane of two random filter-normalized
    directions (``seed``) through the model's weights, and where a path (T, P) of weights
    (at ``epochs``, with training ``losses``) lies on it: ``surface`` {"a", "b", "loss"
    [i][j] at a[i], b[j], "center_loss"} and ``trajectory`` rows {"epoch", "a", "b",
    "train_loss", "distance_to_final", "distance_in_plane"}."""
    directions = random_directions(model, 2, filter_normalize=True, seed=seed)
    surface = loss_surface(model, default_loss(data), data.x_train, data.y_train, directions, grid)
    ab, dist, shadow = plane_shadow(path, model_to_vector(model), directions)
    return {
        "surface": {"a": surface.coords[0].tolist(), "b": surface.coords[1].tolist(),
                    "loss": surface.loss.tolist(), "center_loss": surface.center_loss},
        "trajectory": [{"epoch": e, "a": ab[t, 0], "b": ab[t, 1], "train_loss": losses[t],
                        "distance_to_final": dist[t], "distance_in_plane": shadow[t]}
                       for t, e in enumerate(epochs)],
    }  # fmt: skip


def final_distance_rows(trajectories: list[torch.Tensor], names: list[str], **tag) -> list[dict]:
    """L2 distance between the final weights of every ordered pair of trajectories (T, P):
    tidy rows ``{**tag, "a", "b", "distance"}`` (the diagonal included)."""
    finals = torch.stack([t[-1] for t in trajectories])  # (N, P)
    d = torch.cdist(finals, finals)  # (N, N)
    return [
        {**tag, "a": a, "b": b, "distance": d[i, j].item()}
        for i, a in enumerate(names)
        for j, b in enumerate(names)
    ]


def distance_matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    """(N, N) matrix of the ``distance`` of ``final_distance_rows`` rows, in ``names`` order."""
    index = {n: i for i, n in enumerate(names)}
    d = np.zeros((len(names), len(names)))
    for r in rows:
        d[index[r["a"]], index[r["b"]]] = r["distance"]
    return d


def distance_heatmap(ax, d: np.ndarray, names: list[str], vmax: float):
    """A distance matrix (N, N) as an image with every value written in its cell."""
    image = ax.imshow(d, cmap="viridis", vmin=0, vmax=vmax)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.grid(False)
    for (i, j), v in np.ndenumerate(d):
        color = "white" if v < 0.6 * vmax else "black"
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color=color)
    return image


def draw_trajectories(
    ax, coords: list[dict], names: list[str], labels=None, controls=(), last: int | None = None
) -> None:
    """The trajectories of ``projection_rows`` rows, one path per name: a line through its
    snapshots, o at the first (epoch 0) and * at the last (epoch ``last``), both in the
    legend. ``labels`` maps (name, epoch) to a text written at a third, two thirds and the
    end of the path; a name in ``controls`` is drawn black and dashed, labelled at its end."""
    by_name, labels = group_rows(coords, "event"), labels or {}
    for i, name in enumerate(names):
        pts, control = by_name[(name,)], name in controls
        xs, ys = [r["x"] for r in pts], [r["y"] for r in pts]
        color = "black" if control else COLORS[i % len(COLORS)]
        style = {"ls": "--" if control else "-", "marker": ".", "ms": 4, "lw": 1, "alpha": 0.8}
        ax.plot(xs, ys, color=color, label=name, **style)
        ax.plot(xs[0], ys[0], "o", color=color, ms=7, mfc="white")
        ax.plot(xs[-1], ys[-1], "*", color=color, ms=13, mec="white" if control else "black")
        n = len(pts)
        for j in sorted({n - 1} if control else {n // 3, 2 * n // 3, n - 1}):
            text = labels.get((name, pts[j]["epoch"]))
            if text is not None:
                ax.annotate(text, (xs[j], ys[j]), xytext=(4, -10 if control else 4), fontsize=7,
                            textcoords="offset points", color=color)  # fmt: skip
    ax.plot([], [], "o", color="gray", mfc="white", label="start (epoch 0)")
    ax.plot([], [], "*", color="gray", ms=11, label="end" + f" (epoch {last})" * (last is not None))


def blank_figures(names, message: str) -> dict:
    """One figure per name, each a panel that says ``message`` (e.g. every run diverged)."""
    figs = {}
    for name in names:
        figs[name], ax = new_figure(width=7.0, height=4.5)
        no_data(ax, message)
    return figs


def variance_shown(shares: dict[str, float]) -> str:
    """What 2-D pictures keeping these shares (0-1) of their points' variance show, e.g.
    "the whole-model figure shows 74% of the points' spread; ..." (name -> share)."""

    def amount(share: float) -> str:
        return "most" if share >= 0.8 else "less than half" if share < 0.5 else f"{share:.0%}"

    text = " and ".join(f"the {what} figure shows {amount(v)}" for what, v in shares.items())
    caveat = "; points close in 2-D may be far apart" if min(shares.values()) < 0.8 else ""
    return f"{text} of the points' spread{caveat}"


def draw_loss_plane(ax, a, b, loss, path: list[dict], label: str = "log10 training loss"):
    """log10 of a loss on a plane grid (loss[i][j] at a[i], b[j]; None or NaN: not drawn)
    as filled contours, and a trajectory's rows {"a", "b"} on it: o its start, * at (0, 0).
    Returns the filled contours (for a colour bar)."""
    z = np.log10(np.clip(np.array(loss, dtype=float), 1e-12, None)).T  # (b, a) for contour
    filled = ax.contourf(a, b, z, levels=30, cmap="viridis")
    ax.contour(a, b, z, levels=15, colors="white", linewidths=0.4, alpha=0.6)
    xs, ys = [r["a"] for r in path], [r["b"] for r in path]
    ax.plot(
        xs,
        ys,
        ".-",
        color="red",
        ms=4,
        lw=1,
        label=f"trajectory (projected; {len(path)} snapshots)",
    )
    ax.plot(xs[0], ys[0], "o", color="red", mfc="white", ms=8, label="initial weights")
    ax.plot(0, 0, "*", color="red", mec="white", ms=15, label="final weights")
    return filled


def loss_surface_figure(a, b, loss, center_loss: float, title: str):
    """The grid of ``draw_loss_plane`` as a 3-D surface of log10 loss, * at (0, 0)."""
    fig, _ = new_figure(width=7.0, height=5.5,
                        subplot_kw={"projection": "3d", "computed_zorder": False})  # fmt: skip
    ax = fig.axes[0]
    z = np.log10(np.clip(np.array(loss, dtype=float), 1e-12, None)).T  # (b, a)
    aa, bb = np.meshgrid(a, b)
    ax.plot_surface(aa, bb, z, cmap="viridis", lw=0, antialiased=True, alpha=0.95)
    ax.scatter([0], [0], [np.log10(max(center_loss, 1e-12))], color="red", marker="*", s=120)
    ax.set(xlabel="direction 1", ylabel="direction 2", zlabel="log10 training loss", title=title)
    ax.view_init(elev=35, azim=-60)
    return fig


def parameter_panels(rows: list[dict], titles: list[str], center_loss: float, title: str):
    """One small panel per parameter i, titled ``titles[i]`` (a near-square grid, shared
    axes): the loss of rows ``{"index": i, "delta", "loss"}`` against the move delta, log
    scale, * at delta 0. Returns the figure, titled ``title``."""
    cols = int(np.ceil(np.sqrt(len(titles))))
    fig, axes = new_figure(ncols=cols, nrows=int(np.ceil(len(titles) / cols)), width=2.1,
                           height=1.6, sharex=True, sharey=True, squeeze=False)  # fmt: skip
    by_index = group_rows(rows, "index")
    for i, ax in enumerate(axes.flat):
        if (i,) not in by_index:
            ax.axis("off")
            continue
        delta, loss = np.array([[r["delta"], r["loss"]] for r in by_index[(i,)]], dtype=float).T
        ax.plot(delta, loss, color=COLORS[0], lw=1.2)
        ax.plot([0], [center_loss], "*", color="red", ms=7)
        ax.set_yscale("log")
        ax.set_title(titles[i], fontsize=8, pad=2)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("change δ", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss", fontsize=8)
    fig.suptitle(title, fontsize=10)
    # fixed margins in inches: tight_layout measures every tick of every panel (5 s here)
    width, height = fig.get_size_inches()
    top = 0.25 + 0.2 * (title.count("\n") + 1)  # the suptitle's lines, in inches
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, bottom=0.45 / height,
                        top=1 - top / height, wspace=0.12, hspace=0.5)  # fmt: skip
    return fig


def embedding_rows(points: torch.Tensor, center: torch.Tensor, seed: int = 0, tsne_dims: int = 10):
    """Points (N, P) and their center (P,) in 2-D, by one PCA of all of them and by that PCA
    (to ``tsne_dims`` dimensions) then t-SNE: rows ``{"pca_x", "pca_y", "tsne_x", "tsne_y"}``
    of the points, the center's, and the PCA's explained variance ratios."""
    runs = [points, center[None]]  # the center as its own "run" of one
    pca = project_trajectories(runs, method="pca", seed=seed)
    tsne = project_trajectories(runs, "pca+tsne", pca_components_before_tsne=tsne_dims, seed=seed)
    a, b = (np.vstack(p.coords).tolist() for p in (pca, tsne))  # (N + 1, 2) each
    xy = [
        {"pca_x": u[0], "pca_y": u[1], "tsne_x": v[0], "tsne_y": v[1]}
        for u, v in zip(a, b, strict=True)
    ]
    return xy[:-1], xy[-1], pca.explained_variance_ratio.tolist()


def draw_embeddings(axes, rows: list[dict], center: dict, variance: list[float]):
    """Points ``{"loss", "pca_x", "pca_y", "tsne_x", "tsne_y"}`` in two panels, PCA and PCA
    then t-SNE, coloured by loss on one log scale, with ``center`` (same keys) as a red *.
    Returns the last scatter (for a colour bar)."""
    losses = np.array([r["loss"] for r in rows], dtype=float)  # (N,); None -> NaN
    norm = LogNorm(vmin=max(np.nanmin(losses), 1e-12), vmax=np.nanmax(losses))
    for ax, key, title in zip(axes, ("pca", "tsne"), ("PCA", "PCA then t-SNE"), strict=True):
        xs, ys = ([r[f"{key}_{a}"] for r in rows] for a in "xy")
        points = ax.scatter(xs, ys, c=losses, norm=norm, cmap="viridis", s=10, lw=0)
        ax.plot(center[f"{key}_x"], center[f"{key}_y"], "*", color="red", ms=14, mec="white",
                label="final weights")  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set(xlabel=f"PC1 ({100 * variance[0]:.1f}% of variance)",
                ylabel=f"PC2 ({100 * variance[1]:.1f}% of variance)")  # fmt: skip
    axes[1].set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    return points

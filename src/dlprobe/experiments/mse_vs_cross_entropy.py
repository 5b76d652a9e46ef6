"""Classification loss: MSE on softmax outputs against cross-entropy, on a surface and a net.

Protocol. Exact: a 2-class softmax classifier with two weights, p(class 1) = sigmoid(w . x),
on seeded 2-D Gaussian blobs; each loss and its gradient norm over a grid of (w1, w2); the
gradient at a start far from the solution (opposite the cross-entropy minimum) and along
the line from there to the minimum; gradient descent from that start under each loss, each
at the lr of a grid with the lowest final value of its own loss, same steps. Network: an
MLP from the same seeds (the same initial weights) trained under each loss with SGD, each
loss at the lr of one grid with the best validation accuracy; MSE is the squared error of
the softmax outputs against one-hot targets summed over classes (the lecture's setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from dlprobe.experiments.kit import (
    Activation,
    Bound,
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    column,
    data_record,
    fidelity_row,
    mean_std,
    mlp_population,
    n_train_of,
    new_figure,
    require,
    sci,
)
from dlprobe.experiments.kit.lr_grid import (
    at_selected,
    draw_curves,
    draw_lr_grid,
    select_lr,
    train_rows,
    validation_split,
)
from dlprobe.experiments.kit.plotting import COLORS, log_scale_if_positive
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.surfaces2d import (
    Surface,
    argmin,
    draw_contours,
    draw_paths,
    grad_norm,
    grid_values,
    optimizer_paths,
)
from dlprobe.train import TrainConfig, full_batch_grad_norms

LOSSES = ("MSE", "cross-entropy")


def softmax_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared error of softmax(out) (B, C) against one-hot targets of y (B,), summed over
    classes and averaged over examples."""
    p = out.softmax(-1)  # (B, C)
    onehot = (y[..., None] == torch.arange(p.shape[-1], device=y.device)).to(p.dtype)
    return (p - onehot).square().sum(-1).mean()


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset of the network part
    train_subset: NonNegInt = 0  # training examples used (0: all), a seeded subset
    validation_fraction: Annotated[float, Bound(gt=0, lt=1)] = 0.2  # of them held out for lr
    hidden: tuple[PosInt, ...] = (64,)  # hidden widths of the MLP
    activation: Activation = "relu"  # hidden activation
    lr_factors: tuple[PosFloat, ...] = (0.1, 1.0, 10.0)  # lr grid of both: train.lr times these
    seeds: PosInt = 3  # models per (loss, lr); the same seeds, so the same inits, per loss
    seed: Seed = 0  # base seed: model i uses seed + i; also draws the split and the blobs
    blob_points: Annotated[int, Bound(ge=4)] = 200  # 2-D points of the exact part, half a class
    blob_separation: PosFloat = 1.0  # distance of each class mean from 0, in blob std
    box: PosFloat = 8.0  # the weight grid spans [-box, box]^2; the far start is 0.9 box out
    grid_points: Annotated[int, Bound(ge=10)] = 101  # grid points per weight axis
    surface_steps: PosInt = 300  # gradient-descent steps on each 2-weight surface
    surface_lrs: tuple[PosFloat, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # their lrs
    train: TrainConfig = TrainConfig(optimizer="sgd", lr=0.3, epochs=10, batch_size=128)

    def check(self) -> None:
        n = n_train_of(self.dataset, self.train_subset)
        require(len(set(self.lr_factors)) == len(self.lr_factors), "lr_factors must differ")
        require(n * (1 - self.validation_fraction) >= 2, "too few examples left to train on")
        check_classifier_fits(self.dataset, self.hidden, self.activation, 2 * self.seeds)


# fmt: off
PROFILES = {
    "smoke": {"seeds": 2, "hidden": (16,), "train_subset": 300, "train.epochs": 3,
              "lr_factors": (1.0, 10.0), "blob_points": 40, "grid_points": 21,
              "surface_steps": 30, "surface_lrs": (0.1, 1.0)},
    "full": {"dataset": "mnist", "seeds": 5, "hidden": (256, 256), "train.epochs": 30,
             "train.batch_size": 64, "lr_factors": (0.1, 0.3, 1.0, 3.0, 10.0),
             "grid_points": 201, "surface_steps": 2000},
}
# fmt: on


def _blobs(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, 2) float64 and labels t (N,) in {0, 1}: unit Gaussians at +-separation * u."""
    g = torch.Generator().manual_seed(cfg.seed)
    t = (torch.arange(cfg.blob_points) % 2).double()  # (N,)
    u = torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)], dtype=torch.float64)
    x = torch.randn(cfg.blob_points, 2, generator=g, dtype=torch.float64)
    return x + cfg.blob_separation * (2 * t[:, None] - 1) * u, t


def _loss_fns(x: torch.Tensor, t: torch.Tensor) -> dict:
    """Each loss of the classifier p(class 1) = sigmoid(w . x), as a function of w (..., 2)."""
    return {
        "MSE": lambda w: (2 * (torch.sigmoid(w @ x.T) - t) ** 2).mean(-1),  # both classes
        "cross-entropy": lambda w: F.softplus(torch.where(t > 0, -1.0, 1.0) * (w @ x.T)).mean(-1),
    }


def _exact(cfg: Config) -> dict:
    x, t = _blobs(cfg)
    fns = _loss_fns(x, t)
    w_ce = argmin(fns["cross-entropy"])
    start = -0.9 * cfg.box * w_ce / w_ce.norm()  # opposite the solution
    box = (-cfg.box, cfg.box, -cfg.box, cfg.box)
    line = start + torch.linspace(0, 1, 101, dtype=torch.float64)[:, None] * (w_ce - start)
    out = {"start": start.tolist(), "ce_minimum": w_ce.tolist(), "losses": {},
           "ce_minimum_accuracy": float(((x @ w_ce > 0).double() == t).double().mean())}  # fmt: skip
    for name, fn in fns.items():
        minimum, start_xy = tuple(argmin(fn).tolist()), tuple(start.tolist())
        surface = Surface(name, name, fn, minimum, start_xy, box)
        run = optimizer_paths(surface, ["sgd"], cfg.surface_lrs, cfg.surface_steps, 0.0)
        path = torch.tensor(run["paths"][0]["path"], dtype=torch.float64)  # (steps + 1, 2)
        grid = grid_values(fn, box, cfg.grid_points)
        out["losses"][name] = {
            **run, "grid": grid,
            "grad_grid": grid_values(lambda w, fn=fn: grad_norm(fn, w), box, cfg.grid_points),
            "start_grad_norm": float(grad_norm(fn, start)),
            "line_value": fn(line).tolist(), "line_grad_norm": grad_norm(fn, line).tolist(),
            "path_accuracy": ((path @ x.T > 0).double() == t).double().mean(-1).tolist(),
        }  # fmt: skip
    return out


def _arm(cfg: Config, ctx: RunContext, fit, data, loss: str, tc: TrainConfig):
    """One (loss, lr) population from the shared seeds: rows with the initial gradient norm."""
    widths = [fit.input_dim, *cfg.hidden, fit.output_dim]
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    loss_fn = softmax_mse if loss == "MSE" else F.cross_entropy
    g0 = full_batch_grad_norms(pop, fit, loss_fn).tolist()  # (K,) at the initial weights
    tag, key = {"loss": loss, "lr": tc.lr}, f"{loss}-lr{tc.lr:g}"
    finals, curves = train_rows(ctx, key, pop, fit, data, tc, tag, loss_fn=loss_fn)
    return [{**r, "initial_grad_norm": g} for r, g in zip(finals, g0, strict=True)], curves


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, seed=cfg.seed)
    fit = validation_split(data, cfg.validation_fraction, cfg.seed)
    grid, curves, selected = [], [], {}
    for loss in LOSSES:
        rows = []
        for factor in cfg.lr_factors:
            f, c = _arm(cfg, ctx, fit, data, loss, replace(cfg.train, lr=cfg.train.lr * factor))
            rows, curves = rows + f, curves + c
        grid += rows
        selected[loss] = select_lr(rows)
    return {
        "exact": ctx.stage("exact", lambda _: _exact(cfg)),
        "data": {**data_record(data), "n_fit": fit.n_train, "n_val": fit.n_test},
        "grid": grid, "curves": curves, "selected": selected,
        "budget": {"epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size,
                   "seeds": cfg.seeds, "lrs": sorted({r["lr"] for r in grid}),
                   "optimizer": cfg.train.optimizer, "surface_steps": cfg.surface_steps,
                   "hidden": list(cfg.hidden)},
    }  # fmt: skip


def _surface_figure(exact: dict):
    fig, axes = new_figure(2, 2, width=5.0, height=4.0, layout="constrained")
    grads = [np.log10(np.clip(np.asarray(s["grad_grid"]["z"], dtype=float), 1e-300, None))
             for s in exact["losses"].values()]  # fmt: skip
    levels = np.linspace(min(g.min() for g in grads), max(g.max() for g in grads), 17)
    for j, (name, s) in enumerate(exact["losses"].items()):
        draw_contours(axes[0, j], s["grid"], s["minimum"])
        draw_paths(axes[0, j], s["paths"], exact["start"], s["grid"])
        axes[0, j].set_title(f"{name}; GD, lr {s['paths'][0]['lr']:g} (dark = low)", fontsize=9)
        cs = axes[1, j].contourf(s["grid"]["x"], s["grid"]["y"], grads[j], levels=levels)
        axes[1, j].plot(*exact["start"], "ko", ms=5)
        axes[1, j].set(xlabel="w1", ylabel="w2")
        axes[1, j].set_title(f"{name}: gradient norm; dot = start", fontsize=9)
    fig.colorbar(cs, ax=axes[1, :], label="log10 gradient norm (one scale)")
    return fig


def _line_figure(exact: dict):
    fig, axes = new_figure(3, 1, width=4.2)
    losses = exact["losses"]
    t = np.linspace(0, 1, len(losses["MSE"]["line_value"]))  # 0 = far start, 1 = CE minimum
    for i, (name, s) in enumerate(losses.items()):
        for ax, ys in zip(axes[:2], (s["line_value"], s["line_grad_norm"]), strict=True):
            ax.plot(t, ys, color=COLORS[i], label=name)
        axes[2].plot(s["path_accuracy"], color=COLORS[i], label=f"{name}, lr {s['paths'][0]['lr']:g}")  # fmt: skip
    axes[0].set(xlabel="0 = far start, 1 = cross-entropy minimum", ylabel="loss")
    axes[1].set(xlabel="0 = far start, 1 = cross-entropy minimum", ylabel="gradient norm")
    log_scale_if_positive(axes[1], [v for s in losses.values() for v in s["line_grad_norm"]])
    axes[2].set(xlabel="gradient-descent step", ylabel="training accuracy", ylim=(-0.02, 1.02))
    axes[0].set_title("along the line start -> minimum (exact)", fontsize=9)
    axes[2].set_title("GD from the far start (one exact path each)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def figures(results: dict) -> dict:
    n = results["budget"]["seeds"]
    fig, axes = new_figure(2, 1, width=5.5)
    draw_lr_grid(axes, results["grid"], results["selected"], "loss")
    log_scale_if_positive(axes[1], column(results["grid"], "train_loss"))
    axes[0].set_title(f"mean, min-max over n={n} seeds; ring = selected lr", fontsize=9)
    axes[1].set_ylabel("final train loss (its own loss)")
    figs = {"surfaces": _surface_figure(results["exact"]), "line": _line_figure(results["exact"])}
    figs["lr-grid"] = fig
    fig, axes = new_figure(2, 1, width=5.5)
    sel = at_selected(results["curves"], results["selected"], "loss")
    draw_curves(axes, {f"{k} lr {results['selected'][k]:g}": v for k, v in sel.items()}, "own")
    axes[0].set_title(f"each loss at its selected lr, the same n={n} inits", fontsize=9)
    figs["curves"] = fig
    return figs


def _exact_lines(exact: dict, steps: int) -> tuple[list[str], dict]:
    s = exact["losses"]
    g = {k: v["start_grad_norm"] for k, v in s.items()}
    mse, ce = (np.asarray(s[k]["grad_grid"]["z"], dtype=float) for k in LOSSES)
    weaker = float(np.mean(mse < 0.1 * ce))
    target = exact["ce_minimum_accuracy"] - 0.02  # NaN points count as wrong
    hit = {k: next((i for i, a in enumerate(v["path_accuracy"]) if a >= target), None)
           for k, v in s.items()}  # fmt: skip
    reach = {k: "never" if i is None else f"after {i} step(s)" for k, i in hit.items()}
    start = ", ".join(f"{w:.2f}" for w in exact["start"])
    lines = [
        f"2-weight classifier, far start w = ({start}) opposite the cross-entropy minimum: "
        f"gradient norm MSE {sci(g['MSE'])}, cross-entropy {sci(g['cross-entropy'])} "
        f"({g['cross-entropy'] / max(g['MSE'], 1e-300):.3g}x); over the weight grid MSE's "
        f"gradient is below a tenth of cross-entropy's on {100 * weaker:.0f}% of the points.",
        f"Gradient descent from the far start ({steps} steps at each loss's best lr) reaches "
        f"training accuracy {target:.3f} (that of the cross-entropy minimum less 0.02): MSE "
        f"{reach['MSE']} (lr {s['MSE']['paths'][0]['lr']:g}), cross-entropy "
        f"{reach['cross-entropy']} (lr {s['cross-entropy']['paths'][0]['lr']:g}).",
    ]
    return lines, {"grad": g, "steps": {k: math.inf if i is None else i for k, i in hit.items()}}


def notes(results: dict) -> Notes:
    b, d = results["budget"], results["data"]
    lines, ex = _exact_lines(results["exact"], b["surface_steps"])
    keys = ("train_accuracy", "val_accuracy", "test_accuracy", "initial_grad_norm")
    reached = {loss: {"lr": results["selected"][loss], **{k: mean_std(r[k] for r in rs) for k in keys}}
               for loss, rs in at_selected(results["grid"], results["selected"], "loss").items()}  # fmt: skip
    lines.append(
        f"Network: the MLP {d['name']}-{'-'.join(map(str, b['hidden']))} from the same n="
        f"{b['seeds']} inits under each loss, {b['optimizer']}, {b['epochs']} epochs at batch "
        f"{b['batch_size']}; each loss's lr is the one of "
        f"{', '.join(f'{lr:g}' for lr in b['lrs'])} with the best mean accuracy on "
        f"{d['n_val']} held-out training examples; test on the untouched {d['n_test']}."
    )
    each = [f"{k} at lr {r['lr']:g}: train accuracy {r['train_accuracy'][0]:.3f} ± "
            f"{r['train_accuracy'][1]:.3f}, test {r['test_accuracy'][0]:.3f}, gradient norm at "
            f"the initial weights {sci(r['initial_grad_norm'][0])}" for k, r in reached.items()]  # fmt: skip
    lines += ["; ".join(each) + "."] if each else []
    grids = {f"network {k}": (lr, b["lrs"]) for k, lr in results["selected"].items()} | {
        f"2-weight {k}": (v["paths"][0]["lr"], sorted({t["lr"] for t in v["lr_grid"]}))
        for k, v in results["exact"]["losses"].items()}  # fmt: skip
    if edge := [k for k, (lr, g) in grids.items() if len(g) > 1 and lr in (g[0], g[-1])]:
        lines.append(f"Best lr at the edge of its grid (a wider one might do better): "
                     f"{', '.join(edge)}.")  # fmt: skip
    if none := [k for k, lr in results["selected"].items() if lr is None]:
        lines.append(f"Every lr had a diverged seed, left out: {', '.join(none)}.")
    lines += diverged_lines(results["grid"], "were frozen; an lr with one is not eligible",
                            ("loss", "lr"))  # fmt: skip
    g, hit = ex["grad"], ex["steps"]
    fidelity = [
        fidelity_row(
            "far from the solution MSE is flat while cross-entropy still has gradient",
            "lecture on classification: MSE's total loss is large but flat there",
            f"gradient norm at the far start: MSE {sci(g['MSE'])}, cross-entropy "
            f"{sci(g['cross-entropy'])} (reproduced if 10x or more)",
            g["cross-entropy"] >= 10 * g["MSE"]),
        fidelity_row(
            "from there, gradient descent gets going sooner under cross-entropy than under MSE",
            "lecture: training with MSE may get stuck; cross-entropy is easier to optimize",
            f"steps to the target accuracy: cross-entropy {hit['cross-entropy']}, MSE "
            f"{hit['MSE']}", hit["cross-entropy"] < hit["MSE"]),
    ]  # fmt: skip
    if len(reached) == 2:
        ce, mse = (reached[k]["train_accuracy"][0] for k in ("cross-entropy", "MSE"))
        fidelity.append(fidelity_row(
            "a network trains at least as well with cross-entropy as with MSE",
            "lecture: cross-entropy is the loss used for classification",
            f"final train accuracy at the selected lrs: cross-entropy {ce:.3f}, MSE {mse:.3f}",
            ce >= mse, "at a tuned lr, near the usual init, both losses have gradient"))  # fmt: skip
    summary = {f"{k}: gradient norm at the far start": v for k, v in g.items()} | {
        f"{k}: train / test accuracy at the selected lr":
        [r["train_accuracy"][0], r["test_accuracy"][0]] for k, r in reached.items()}  # fmt: skip
    return Notes(summary=summary, observations=lines, fidelity=fidelity)


EXPERIMENT = Experiment(
    id="mse-vs-cross-entropy",
    item="Lecture L7",
    part="loss",
    rank=1,
    title="MSE vs cross-entropy for classification",
    question="Why is cross-entropy easier to optimize than MSE for a softmax classifier?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "surfaces": "top: each loss of a 2-weight softmax classifier over its weights "
        "(log-spaced contours) with gradient descent from the far start (dot) at its best lr; "
        "bottom: the gradient norm over the same grid (log-spaced contours)",
        "line": "exact loss and gradient norm along the straight line from the far start to "
        "the cross-entropy minimum, and training accuracy along each descent path",
        "lr-grid": "network: final validation accuracy and train loss at every lr of the grid "
        "per loss, mean and min-max bars over seeds; ring = the selected lr",
        "curves": "network at each loss's selected lr: training loss (each its own) and "
        "validation accuracy per epoch, mean and min-max band over the same seeds",
    },
    quick_minutes=0.4,  # 23 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="digits, a 64 MLP, 3 seeds, 10 epochs at batch 128 and 3 lrs instead of "
    "MNIST, 256-256, 5 seeds, 30 epochs at batch 64 and 5 lrs.",
)

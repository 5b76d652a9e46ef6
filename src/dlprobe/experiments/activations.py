"""Tips for deep learning: vanishing gradients in deep MLPs, by activation function.

Protocol: per activation, a population of seeds of one deep MLP (same depth and units
after every activation, each activation's own Kaiming gain) trains with the same optimizer,
lr, batch size and epochs on the same data. Before training and at snapshots along it, each
layer's root-mean-square gradient per weight (so layers of different shapes compare) on
fixed training examples, and its weight change since initialisation relative to its
initial norm. The claim: with sigmoid the layers near the input get far smaller gradients
and learn very slowly, the layers near the output fast; ReLU and maxout do not shrink them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    data_record,
    fidelity_row,
    group_rows,
    mean_band,
    mean_std,
    n_train_of,
    new_figure,
    one_of,
    probe_examples,
    require,
    sci,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.trajectories import check_snapshots
from dlprobe.models import INITS, MLP, mlp_param_count
from dlprobe.train import Population, TrainConfig

STUCK_SHARE = 0.9  # a run whose final train loss is above this share of its initial one
GRAD, CHANGE = "RMS gradient per weight", "‖W − W(0)‖ / ‖W(0)‖"  # the two per-layer probes


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 0  # training examples used (0: all), a seeded subset
    activations: tuple[Activation, ...] = ("sigmoid", "tanh", "relu", "selu", "maxout")
    depth: Annotated[int, Bound(ge=2)] = 8  # hidden layers
    width: PosInt = 32  # units after every hidden activation (maxout: 2 pieces per unit)
    init: one_of(INITS, "init") = "kaiming"  # kaiming: N(0, gain²/fan_in), the activation's gain
    seeds: PosInt = 3  # models per activation, trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also draws the probe examples
    probe_examples: PosInt = 512  # training examples the per-layer gradients are taken on
    # training; the layers are probed every snapshot_every_epochs
    train: TrainConfig = TrainConfig(
        optimizer="sgd", lr=0.05, epochs=40, batch_size=64, snapshot_every_epochs=10
    )

    def check(self) -> None:
        acts = self.activations
        require(len(set(acts)) == len(acts) > 0, f"give distinct activations, got {acts}")
        n_train_of(self.dataset, self.train_subset)
        for act in self.activations:
            check_classifier_fits(self.dataset, [self.width] * self.depth, act, self.seeds)
        check_snapshots(self.train)


# fmt: off
PROFILES = {
    "smoke": {"activations": ("sigmoid", "relu", "maxout"), "depth": 3, "width": 8,
              "seeds": 2, "train_subset": 256, "probe_examples": 64, "train.epochs": 4,
              "train.snapshot_every_epochs": 2},
    "full": {"dataset": "mnist", "width": 128, "seeds": 5, "probe_examples": 2048,
             "train.epochs": 30, "train.snapshot_every_epochs": 5},
}
# fmt: on


def layer_gradient_rms(pop: Population, names: list[str], x, y) -> torch.Tensor:
    """(K, L) root-mean-square gradient per weight of the mean cross-entropy on (x, y),
    for each model and each parameter in ``names``; the population is left in train mode."""
    pop.train(False)
    out = pop.forward(x, shared=True)  # (K, n, C)
    per_example = F.cross_entropy(out.flatten(0, 1), y.repeat(pop.size), reduction="none")
    losses = per_example.reshape(pop.size, -1).mean(1)  # (K,)
    grads = torch.autograd.grad(losses.sum(), [pop.params[n] for n in names])
    pop.train(True)
    return torch.stack([g.reshape(pop.size, -1).pow(2).mean(1).sqrt() for g in grads], 1)


def _probe(pop: Population, hist, x, y, act: str) -> list[dict]:
    """Per-layer gradient and weight change of each model at each snapshot before its
    divergence (and always before training), as tidy rows."""
    names = [n for n in pop.params if n.endswith("weight")]
    sizes = [p[0].numel() for p in pop.params.values()]

    def split(flat: torch.Tensor) -> dict:  # (K, P) -> {name: (K, ...)}
        parts = torch.split(flat, sizes, dim=1)
        return {n: t.reshape(p.shape) for (n, p), t in zip(pop.params.items(), parts, strict=True)}

    start, rows = split(hist.snapshots[0]), []
    for epoch, flat in zip(hist.snapshot_epochs, hist.snapshots, strict=True):
        now = split(flat)
        pop.load_flat_params(flat)
        rms = layer_gradient_rms(pop, names, x, y).detach().cpu()  # (K, L)
        change = torch.stack(  # (K, L): ‖W_l - W_l(0)‖ / ‖W_l(0)‖
            [(now[n] - start[n]).flatten(1).norm(dim=1) / start[n].flatten(1).norm(dim=1)
             for n in names], 1)  # fmt: skip
        for k, seed in enumerate(pop.seeds):
            d = hist.diverged_at_epoch[k]
            probed = d is None or epoch < d or epoch == 0
            for layer in range(len(names)):
                rows.append({"activation": act, "seed": seed, "epoch": epoch, "layer": layer + 1,
                             "grad_rms": float(rms[k, layer]) if probed else math.nan,
                             "weight_change": float(change[k, layer]) if probed else math.nan})  # fmt: skip
    return rows


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    x, y = probe_examples(data, cfg.probe_examples, cfg.seed)
    widths = [data.input_dim, *[cfg.width] * cfg.depth, data.output_dim]
    seeds = seeds_from(cfg.seed, cfg.seeds)
    held = {"init": cfg.init, "depth": cfg.depth, "width": cfg.width}
    held |= {k: getattr(cfg.train, k) for k in ("optimizer", "lr", "epochs", "batch_size")}
    layers, curves, finals = [], [], []
    for act in cfg.activations:
        pop = Population(partial(MLP, widths, act, init=cfg.init), seeds, ctx.device)
        hist = ctx.train(act, pop, data, cfg.train)
        ctx.log(f"probing the layers of {act} at epochs {hist.snapshot_epochs}")
        layers += _probe(pop, hist, x, y, act)
        curves += [{"activation": act, **r} for r in hist.epoch_records()]
        for r, initial in zip(hist.final_records(), hist.initial_train_loss, strict=True):
            stuck = not r["diverged"] and r["train_loss"] > STUCK_SHARE * initial
            finals.append({"activation": act, **r, "initial_train_loss": initial,
                           "stuck": stuck})  # fmt: skip
    return {
        "dataset": data_record(data),
        "widths": widths,
        "params": {a: mlp_param_count(widths, a) for a in cfg.activations},
        "held_equal": held,
        "probe_examples": int(x.shape[0]),
        "seeds": seeds,
        "layers": layers,
        "curves": curves,
        "final": finals,
    }


def _layer_runs(results: dict, act: str, epoch: int, key: str) -> tuple[list, np.ndarray]:
    rows = [r for r in results["layers"] if r["activation"] == act and r["epoch"] == epoch]
    return series(rows, "layer", key)  # layers, (n_seeds, L)


def _layer_axis(ax, results: dict) -> None:
    n = len(results["widths"]) - 1
    ax.set_xticks(range(1, n + 1))
    ax.set_xlabel(f"layer (1 = next to the input, {n} = output)")


def _per_layer_figure(results: dict, epoch: int, key: str, ylabel: str, title: str):
    fig, ax = new_figure(width=6.5)
    for i, act in enumerate(results["params"]):
        xs, runs = _layer_runs(results, act, epoch, key)
        mean_band(ax, xs, runs, act, COLORS[i], log=True)
    ax.set_yscale("log")
    _layer_axis(ax, results)
    ax.set_ylabel(ylabel)
    ax.set_title(title + "\nline: geometric mean over seeds, band: min-max", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _training_gradient_figure(results: dict):
    acts = list(results["params"])
    fig, axes = new_figure(ncols=len(acts), width=3.3, height=3.6, squeeze=False, sharey=True)
    epochs = sorted({r["epoch"] for r in results["layers"]})
    cmap = colormaps["viridis"](np.linspace(0.0, 0.85, len(epochs)))  # early dark, late light
    for ax, act in zip(axes[0], acts, strict=True):
        for j, epoch in enumerate(epochs):
            xs, runs = _layer_runs(results, act, epoch, "grad_rms")
            mean_band(ax, xs, runs, f"epoch {epoch}", cmap[j], log=True)
        _layer_axis(ax, results)
        ax.set_title(act, fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylabel(GRAD)
    fig.suptitle("Gradient per layer along training (geometric mean over seeds; diverged "
                 "runs left out from their divergence)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def _training_figure(results: dict):
    fig, (ax_loss, ax_acc) = new_figure(ncols=2, width=5.0)
    for i, act in enumerate(results["params"]):
        rows = [r for r in results["curves"] if r["activation"] == act]
        xs, runs = series(rows, "epoch", "train_loss")
        mean_band(ax_loss, xs, runs, act, COLORS[i], log=True)
        xs, runs = series(rows, "epoch", "test_accuracy")
        mean_band(ax_acc, xs, runs, act, COLORS[i])
    ax_loss.set(yscale="log", xlabel="epoch", ylabel="training loss (cross-entropy)")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy")
    ax_loss.legend(fontsize=8)
    fig.suptitle("Training curves (line: mean over seeds, geometric for the loss; band: "
                 "min-max; diverged runs left out)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    last, n = max(r["epoch"] for r in results["layers"]), results["probe_examples"]
    at_init = f"Gradient per layer at initialisation ({n} training examples)"
    moved = f"How far each layer's weights moved in {last} epochs"
    return {
        "gradients-at-init": _per_layer_figure(results, 0, "grad_rms", GRAD, at_init),
        "gradients-in-training": _training_gradient_figure(results),
        "weight-change": _per_layer_figure(results, last, "weight_change", CHANGE, moved),
        "training": _training_figure(results),
    }


def _first_over_last(results: dict, act: str, epoch: int, key: str) -> tuple:
    """Layer 1's value over the output layer's, per seed: geometric mean, min, max, n
    (over the seeds probed at ``epoch``)."""
    _, runs = _layer_runs(results, act, epoch, key)  # (n_seeds, L)
    v = runs[:, 0] / runs[:, -1]
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return math.nan, math.nan, math.nan, 0
    return float(np.exp(np.log(v).mean())), float(v.min()), float(v.max()), int(v.size)


def _ratio_text(g) -> str:
    return f"{sci(g[0])} (min {sci(g[1])}, max {sci(g[2])}, n={g[3]})"


def _mean_sd(values) -> str:
    m, sd = mean_std(values)
    return f"{m:.3g} ± {sd:.2g}" if values else "-"


def notes(results: dict) -> Notes:
    held, last = results["held_equal"], max(r["epoch"] for r in results["layers"])
    lines = [
        f"Held equal: {held['depth']} hidden layers of {held['width']} units, {held['init']} "
        f"initialisation (each activation's gain), {held['optimizer']} at lr {held['lr']:g}, "
        f"batch {held['batch_size']}, {held['epochs']} epochs, {len(results['seeds'])} seeds "
        f"per activation; gradients on {results['probe_examples']} training examples. "
        f"Parameters: {', '.join(f'{a} {p}' for a, p in results['params'].items())}."
    ]
    summary, grad, change, loss, table = {}, {}, {}, {}, []
    for (act,), runs in group_rows(results["final"], "activation").items():
        grad[act] = _first_over_last(results, act, 0, "grad_rms")
        change[act] = _first_over_last(results, act, last, "weight_change")
        rows = [r for r in runs if not r["diverged"]]
        loss[act] = [r["train_loss"] for r in rows]
        stuck = [str(r["seed"]) for r in rows if r["stuck"]]
        summary[f"{act}: layer 1 / output RMS gradient at init (geometric mean)"] = grad[act][0]
        summary[f"{act}: mean final train loss"] = float(np.mean(loss[act] or [math.nan]))
        table.append(
            {
                "activation": act,
                "runs (stuck, diverged)": f"{len(runs)} ({len(stuck)}, {len(runs) - len(rows)})",
                "layer 1 / output gradient at init": _ratio_text(grad[act]),
                f"layer 1 / output weight change, epoch {last}": _ratio_text(change[act]),
                "final train loss": _mean_sd(loss[act]),
                "final test accuracy": _mean_sd([r["test_accuracy"] for r in rows]),
            }
        )
        stuck_text = f" Stuck above {STUCK_SHARE:g} of the initial loss: seeds {', '.join(stuck)}."
        lines.append(
            f"{act}: layer 1 / output layer, gradient per weight at initialisation "
            f"{_ratio_text(grad[act])}; relative weight change by epoch {last} "
            f"{_ratio_text(change[act])}." + (stuck_text if stuck else "")
        )
    lines += diverged_lines(results["final"], "are left out from then on", ("activation",))
    tables = [("Per activation (ratios: geometric mean over seeds, min, max)", table)]
    return Notes(summary, lines, tables, _fidelity(grad, change, loss))


def _fidelity(grad: dict, change: dict, loss: dict) -> list[dict]:
    """The lecture's claims, each checked where its activations ran (and were probed)."""
    slides = "Tips slides: "
    checks = [  # claim, reference, activation, ratios, verdict, what a miss means
        ("sigmoid: gradients vanish towards the input", slides + "smaller gradients near "
         "the input", "sigmoid", grad, lambda r: r <= 1e-2, "the ratio is above 1e-2"),
        ("relu: no vanishing gradient", slides + "ReLU is a thinner linear network, no "
         "smaller gradients", "relu", grad, lambda r: r >= 0.1, "the ratio is below 0.1"),
        ("maxout: no vanishing gradient", slides + "ReLU is a special case of maxout",
         "maxout", grad, lambda r: r >= 0.1, "the ratio is below 0.1"),
        ("sigmoid: layers near the input learn orders of magnitude slower", slides + "near "
         "the input 'learn very slow', near the output 'learn very fast'", "sigmoid", change,
         lambda r: r <= 1e-2, "the ratio is above 1e-2"),
    ]  # fmt: skip
    rows = []
    for claim, reference, act, ratios, passes, why in checks:
        probed = act in ratios and ratios[act][3] > 0
        what = "RMS gradient" if ratios is grad else "relative weight change"
        measured = f"layer 1 / output {what} {_ratio_text(ratios[act])}" if probed else "-"
        why = why if probed else f"{act} was not run or not probed"
        ok = probed and passes(ratios[act][0])
        rows.append(fidelity_row(claim, reference, measured, ok, why))
    have = [a for a in ("sigmoid", "relu") if loss.get(a)]
    measured = "; ".join(f"{a} {_mean_sd(loss[a])} (n={len(loss[a])})" for a in have) or "-"
    ok = len(have) == 2 and np.mean(loss["sigmoid"]) > np.mean(loss["relu"])
    why = "the sigmoid net ends lower" if len(have) == 2 else "sigmoid or relu has no run"
    claim = "a deep sigmoid net trains worse than a deep ReLU net (final training loss)"
    reference = slides + "deeper usually does not imply better with sigmoid; ReLU fixes it"
    return [*rows, fidelity_row(claim, reference, measured, ok, why)]


EXPERIMENT = Experiment(
    id="activations",
    item="Tips",
    part="tips",
    rank=1,
    title="Activation functions and vanishing gradients",
    question="In a deep MLP, does the gradient vanish towards the input with sigmoid units, "
    "so that early layers learn orders of magnitude slower, and not with ReLU or maxout?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "gradients-at-init": "RMS gradient per weight of every layer before training (log)",
        "gradients-in-training": "the same at snapshots along training, per activation",
        "weight-change": "each layer's weight change by the end, over its initial norm (log)",
        "training": "training loss (log) and test accuracy per epoch",
    },
    quick_minutes=0.9,  # 49 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="digits and 32-unit layers, 40 epochs (full: MNIST, 128 units, 30 epochs).",
)

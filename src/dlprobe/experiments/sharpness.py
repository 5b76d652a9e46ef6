"""Bonus: sharpness of the minima reached with different batch sizes, and why sharpness
alone cannot explain generalization (Dinh et al. 2017).

Protocol: for each of at least 10 batch sizes train a population of seeds for the same
budget (kit.batches), then measure on 500 training examples, in float64: Keskar et al.'s
sharpness (the largest relative loss rise in the box |z_i| <= ε (|θ_i| + 1)), its estimate
‖H‖₂ ε² / (2 (1 + L)), the largest loss rise in the ε-ball, and the valley's width at a
loss height along random directions. Then scale one trained ReLU model's layer by a and
the next by 1/a: the function stays the same while every sharpness changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from dlprobe.experiments.kit import (
    COLORS,
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
    finite,
    mlp_population,
    new_figure,
    one_of,
    probe_examples,
    require,
    seeds_from,
    spearman,
)
from dlprobe.experiments.kit.batches import (
    Budget,
    at_batch,
    batch_order,
    batch_panel,
    batch_sizes_of,
    batch_summary,
    batch_trend,
    check_sweep,
    length_table,
    model_and_data,
    model_and_data_table,
    split_metrics,
    train_sweep,
)
from dlprobe.experiments.kit.plotting import joint_legend, twin_axis
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.measure.rescale import rescale_relu_layers
from dlprobe.measure.sharpness import sharpness, valley_width
from dlprobe.models import PIECEWISE_LINEAR
from dlprobe.train import TrainConfig

# Result field -> label; the valley width grows with flatness, the others with sharpness.
MEASURES = {
    "hessian": "Hessian estimate ‖H‖₂ε²/(2(1+L))",
    "keskar": "Keskar box maximum (L-BFGS-B)",
    "ball": "max loss rise in the ε-ball",
    "valley_width": "valley width (larger = flatter)",
}
HomogeneousActivation = one_of(PIECEWISE_LINEAR, "positively homogeneous activation")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 2000  # training examples, a seeded subset (0: the whole set)
    hidden: tuple[PosInt, ...] = (32, 32)  # hidden-layer widths of the MLP
    activation: HomogeneousActivation = "relu"  # hidden activation; positively homogeneous
    # examples per optimizer step, one population each; 0 = the whole training set
    batch_sizes: tuple[NonNegInt, ...] = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 0)
    budget: Budget = Budget(steps=2000)  # how long every model trains
    seeds: PosInt = 2  # models per batch size, trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also subsets and random directions
    epsilon: PosFloat = 1e-4  # neighbourhood size of the box, the ball and the Hessian estimate
    sharpness_examples: PosInt = 500  # training examples of the loss that is probed
    keskar_steps: PosInt = 20  # L-BFGS-B iterations of Keskar's box maximization
    ball_steps: PosInt = 20  # projected gradient-ascent steps in the ball
    valley_height: PosFloat = 0.01  # loss rise that defines the valley's edge
    valley_directions: PosInt = 5  # random unit directions the valley width is averaged over
    valley_max_distance: PosFloat = 20.0  # farthest distance searched along a direction
    rescale_factors: tuple[PosFloat, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # Dinh et al.'s a
    rescale_layer: NonNegInt = 0  # Linear layer scaled by a (the next one by 1/a)
    train: TrainConfig = TrainConfig()  # optimizer and lr; batch size and length: per model

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)
        check_sweep(self.batch_sizes, self.dataset, self.train_subset, self.train)
        require(len(self.rescale_factors) >= 2, "give at least two rescale_factors")
        require(
            self.rescale_layer < len(self.hidden),
            f"rescale_layer must be in [0, {len(self.hidden) - 1}] (a layer with a next one)",
        )


PROFILES = {
    "smoke": {
        "train_subset": 200,
        "hidden": (8,),
        "batch_sizes": (8, 12, 16, 24, 32, 48, 64, 96, 128, 0),
        "budget.steps": 20,
        "seeds": 1,
        "sharpness_examples": 50,
        "keskar_steps": 3,
        "ball_steps": 3,
        "valley_directions": 1,
        "rescale_factors": (0.1, 10.0),
    },
    "full": {
        "dataset": "mnist",
        "train_subset": 0,
        "hidden": (32, 32),  # 784-32-32-10: 26 506 parameters
        "batch_sizes": (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        "budget.steps": 10000,
        "seeds": 3,
        "keskar_steps": 100,
        "ball_steps": 100,
        "valley_directions": 10,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    x_probe, y_probe = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    setup = model_and_data(data, cfg.hidden, cfg.activation)
    widths = setup["model"]["widths"]
    population = partial(mlp_population, widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    ordered = batch_order(cfg.batch_sizes, data.n_train)
    dinh_batch = ordered[len(ordered) // 2] or data.n_train  # the rescaled model's batch size
    probe = partial(measure, cfg=cfg, x=x_probe, y=y_probe)
    rows = []
    for key, pop, records in train_sweep(
        ctx, data, population, cfg.train, cfg.batch_sizes, cfg.budget, probe
    ):
        rows += records
        if records[0]["batch_size"] == dinh_batch:
            dinh_model = pop.model(0)
            src = dict(stage=key, batch_size=dinh_batch, seed=cfg.seed, layer=cfg.rescale_layer)
    dinh = ctx.stage(
        "rescaled", lambda _ckpt: {"rows": rescaled(dinh_model, cfg, data, x_probe, y_probe)}
    )["rows"]
    ctx.log(f"  Dinh et al. rescaling: {len(dinh)} factors measured")
    return {
        **setup,
        "sharpness_examples": int(x_probe.shape[0]),
        "epsilon": cfg.epsilon,
        "valley_height": cfg.valley_height,
        "seeds": seeds_from(cfg.seed, cfg.seeds),
        "runs": rows,
        "dinh_source": src,
        "dinh": dinh,
    }


def measure(model, cfg: Config, x, y) -> dict:
    """Every sharpness measure of one model on (x, y)."""
    kw = {"epsilon": cfg.epsilon, "seed": cfg.seed}
    hess = sharpness(model, F.cross_entropy, x, y, method="hessian", **kw)
    keskar = sharpness(model, F.cross_entropy, x, y, method="keskar", steps=cfg.keskar_steps, **kw)
    ball = sharpness(model, F.cross_entropy, x, y, method="ball", steps=cfg.ball_steps, **kw)
    reach = {"n_directions": cfg.valley_directions, "max_distance": cfg.valley_max_distance}
    valley = valley_width(model, F.cross_entropy, x, y, cfg.valley_height, seed=cfg.seed, **reach)
    return {
        "probe_loss": hess.base_loss,
        "hessian": hess.value,
        "hessian_norm": hess.hessian_norm,
        "keskar": keskar.value,
        "ball": ball.value,
        # inf where a direction never reached the height within the search distance
        "valley_width": valley.mean if math.isfinite(valley.mean) else None,
    }


def rescaled(model, cfg: Config, data, x_probe, y_probe) -> list[dict]:
    """Per factor a (and 1): the model with layer ``rescale_layer`` scaled by a and the next
    by 1/a, its loss, accuracy, output change and sharpness on (x_probe, y_probe)."""
    out = []
    with torch.no_grad():
        reference = model(data.x_test)  # (n_test, C)
    for a in sorted(set(cfg.rescale_factors) | {1.0}):
        scaled = rescale_relu_layers(model, cfg.rescale_layer, float(a))
        with torch.no_grad():
            change = (scaled(data.x_test) - reference).abs().max().item()
        row = {"factor": float(a), **split_metrics(scaled, data), "max_output_change": change}
        out.append({**row, **measure(scaled, cfg, x_probe, y_probe)})
    return out


def figures(results: dict) -> dict:
    runs, n_train = results["runs"], results["dataset"]["n_train"]
    fig, axes = new_figure(ncols=3, nrows=2, width=4.4, height=3.6)
    titles = {**MEASURES, "valley_width": f"valley width at loss rise {results['valley_height']:g}"}
    for i, (ax, (metric, title)) in enumerate(zip(axes.flat[:4], titles.items(), strict=True)):
        log = metric != "valley_width"
        batch_panel(ax, runs, n_train, {metric: "mean, band min-max"}, log=log, first_color=i)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    for ax, (metric, label) in zip(
        axes.flat[4:], (("accuracy", "accuracy"), ("loss", "cross-entropy loss")), strict=True
    ):
        splits = {f"{s}_{metric}": s for s in ("train", "test")}
        batch_panel(ax, runs, n_train, splits, log=metric == "loss")
        ax.set_title(f"training and test {label}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Sharpness (ε={results['epsilon']:g}, {results['sharpness_examples']} training "
        f"examples) and accuracy vs batch size; n={len(results['seeds'])} seed(s) per batch size"
    )
    fig.tight_layout()
    return {"sharpness-vs-batch-size": fig, "dinh-rescaling": _dinh_figure(results)}


def _dinh_figure(results: dict):
    dinh, src = results["dinh"], results["dinh_source"]
    a = column(dinh, "factor")
    ref = next(r for r in dinh if r["factor"] == 1.0)
    fig, (ax, ax_r) = new_figure(ncols=2, width=5.2, height=4.2)
    for i, (metric, label) in enumerate(MEASURES.items()):
        relative = column(dinh, metric) / (ref[metric] or np.nan)
        ax.plot(a, relative, "o-", color=COLORS[i], label=label.split(" (")[0])
    ax.set(xscale="log", yscale="log", xlabel="rescaling factor a (log scale)",
           ylabel="measure / its value at a = 1 (log)")  # fmt: skip
    ax.set_title("sharpness of the same function", fontsize=10)
    ax.legend(fontsize=7)
    ax2 = twin_axis(ax_r)
    for i, split in enumerate(("train", "test")):
        ax_r.plot(a, column(dinh, f"{split}_loss"), "o-", color=COLORS[i], label=f"{split} loss")
        ax2.plot(a, column(dinh, f"{split}_accuracy"), "s--", color=COLORS[i],
                 label=f"{split} accuracy (right)")  # fmt: skip
    losses = finite(r[f"{s}_loss"] for r in dinh for s in ("train", "test"))
    ax_r.set_ylim(0, 1.25 * max(losses, default=1.0))
    ax_r.set(xscale="log", xlabel="rescaling factor a (log scale)",
             ylabel="cross-entropy loss (solid)")  # fmt: skip
    ax2.set(ylim=(0, 1.02), ylabel="accuracy (dashed)")
    ax_r.set_title("loss and accuracy: unchanged", fontsize=10)
    joint_legend(ax_r, ax2, fontsize=7, loc="lower center", ncol=2)
    fig.suptitle(
        f"Dinh et al.: layer {src['layer']} × a, layer {src['layer'] + 1} × 1/a "
        f"(one model: batch size {src['batch_size']}, seed {src['seed']}; n=1)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _spread(dinh: list[dict], metric: str) -> float:
    """max / min of a measure over the rescaling factors (NaN when it has no values)."""
    v = finite(r[metric] for r in dinh)
    return float(v.max() / v.min()) if v.size else math.nan


def _summary(results: dict) -> dict:
    runs, dinh = results["runs"], results["dinh"]
    out = batch_summary(runs, (*MEASURES, "test_accuracy"), MEASURES)
    for r in dinh:
        out[f"rescaled a={r['factor']:g}: train loss / test acc / hessian / keskar / ball"] = [
            r[m] for m in ("train_loss", "test_accuracy", "hessian", "keskar", "ball")
        ]
    for metric in MEASURES:
        out[f"rescaled: max/min of {metric} over a"] = _spread(dinh, metric)
    return out


def _dinh_line(dinh: list[dict], src: dict) -> str:
    a, change, loss, acc = (
        finite(r[m] for r in dinh)
        for m in ("factor", "max_output_change", "train_loss", "test_accuracy")
    )
    return (
        f"Dinh et al.: rescaling layer {src['layer']} by a and layer {src['layer'] + 1} by 1/a "
        f"(a from {a.min():g} to {a.max():g}, one model of batch size {src['batch_size']}) "
        f"changes the outputs by at most {change.max():.1e}, the training loss by "
        f"{np.ptp(loss):.1e} and the test accuracy by {np.ptp(acc):.3f}, while the Hessian "
        f"sharpness varies {_spread(dinh, 'hessian'):.1f}x, Keskar's "
        f"{_spread(dinh, 'keskar'):.1f}x, the ball's {_spread(dinh, 'ball'):.1f}x and the "
        f"valley width {_spread(dinh, 'valley_width'):.1f}x: the same function can be made "
        "sharp or flat."
    )


def notes(results: dict) -> Notes:
    runs = results["runs"]
    sizes, k = batch_sizes_of(runs), len(results["seeds"])
    lo, hi = sizes[0], sizes[-1]
    lines = [
        f"{len(sizes)} batch sizes ({', '.join(map(str, sizes))}), {k} seed(s) each, "
        f"{min(r['steps'] for r in runs)}-{max(r['steps'] for r in runs)} optimizer steps; "
        f"model {'-'.join(map(str, results['model']['widths']))} "
        f"({results['model_params']} params)."
    ]
    for metric, label in MEASURES.items():
        rho, n = batch_trend(runs, metric)
        m_lo, m_hi = at_batch(runs, metric, lo)[0], at_batch(runs, metric, hi)[0]
        lines.append(
            f"{label}: {m_lo:.3g} at batch {lo} and {m_hi:.3g} at batch {hi} (mean of {k}); "
            f"Spearman r = {rho:+.2f} with log batch size over n = {n} runs."
        )
    a_lo, a_hi = (at_batch(runs, "test_accuracy", b)[0] for b in (lo, hi))
    gap = column(runs, "test_loss") - column(runs, "train_loss")  # (n_runs,), NaN if missing
    rho_gap, _ = spearman(column(runs, "hessian"), gap)
    lines.append(
        f"Test accuracy is {a_lo:.3f} at batch {lo} and {a_hi:.3f} at batch {hi}; across all "
        f"n = {len(runs)} runs the Hessian sharpness correlates with the generalization gap "
        f"(test minus training loss) at Spearman r = {rho_gap:+.2f}."
    )
    lines.append(_dinh_line(results["dinh"], results["dinh_source"]))
    lines += diverged_lines(runs)
    tables = [model_and_data_table(results), length_table(runs)]
    return Notes(_summary(results), lines, tables)


EXPERIMENT = Experiment(
    id="sharpness",
    item="bonus",
    part="bonus",
    rank=2,
    title="Sharpness vs batch size, and the rescaling counterpoint",
    question="Do large batches find sharper minima (Keskar et al.), and does sharpness by "
    "itself explain generalization when the same function can be made sharp or flat "
    "(Dinh et al.)?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "sharpness-vs-batch-size": "four sharpness measures (log scale; the valley width "
        "grows with flatness), training and test accuracy and loss against batch size; "
        "line = mean over seeds (geometric on log axes), band = min-max",
        "dinh-rescaling": "left: each measure of the rescaled model relative to the "
        "original (log-log); right: its training and test loss and accuracy, unchanged",
    },
    quick_minutes=0.6,
    full_differs="mnist1d (2000 training examples, MLP 40-32-32-10 with 2698 parameters), "
    "2000 steps and 2 seeds instead of MNIST with a 26 506-parameter model.",
)

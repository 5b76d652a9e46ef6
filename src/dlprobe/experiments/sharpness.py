"""HW1-3 bonus: sharpness of the minima reached with different batch sizes, and why
sharpness alone cannot explain generalization (Dinh et al. 2017).

Protocol: for each of at least 10 batch sizes train a population of seeds for the same
number of optimizer steps (see ``sensitivity`` for why steps and not epochs), then measure
on 500 training examples, in float64: Keskar et al.'s sharpness (the largest relative
loss rise in the box |z_i| <= eps (|theta_i| + 1)), its second-order estimate
||H||_2 eps^2 / (2 (1 + L)), the largest loss rise in the eps-ball, and the width of the
valley at a given loss height along random directions. Then rescale one trained ReLU
model's first layer by a and the next by 1/a: the function (so loss and accuracy) stays the
same while every sharpness changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from dlprobe.experiments.base import Experiment
from dlprobe.experiments.classification import (
    check_batch_sizes,
    check_dataset,
    data_setting,
    epochs_for_steps,
    load_classification,
    mlp_spec,
    probe_examples,
)
from dlprobe.experiments.common import (
    check_common,
    diverged_lines,
    group_rows,
    mean_std,
    model_seeds,
    require,
)
from dlprobe.experiments.plotting import (
    COLORS,
    batch_axis,
    joint_legend,
    mean_band,
    new_figure,
    twin_axis,
)
from dlprobe.measure.interpolate import classification_metrics
from dlprobe.measure.rescale import rescale_relu_layers
from dlprobe.measure.sharpness import sharpness, valley_width
from dlprobe.models import MLP, PIECEWISE_LINEAR, describe_model, mlp_param_count
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
        for k, seed in enumerate(seeds):
            rows.append(
                {
                    "batch_size": batch,
                    "full_batch": b == 0,
                    "seed": seed,
                    "stage": key,
                    "epochs": epochs,
                    "steps": epochs * train_cfg.steps_per_epoch(data.n_train),
                    "train_loss": hist.final("train_loss")[k],
                    "test_loss": hist.final("test_loss")[k],
                    "train_accuracy": hist.final("train_accuracy")[k],
                    "test_accuracy": hist.final("test_accuracy")[k],
                    "diverged": k in hist.diverged,
                    **probes[k],
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


# -- figures and numbers -----------------------------------------------------------------


def _by_batch(results: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """Batch sizes (ascending) and an array (n_seeds, n_batch_sizes) of ``metric``."""
    groups = group_rows(results["runs"], "batch_size")
    sizes = sorted(b for (b,) in groups)
    runs = np.array(
        [[groups[(b,)][k][metric] for b in sizes] for k in range(len(results["seeds"]))],
        dtype=float,
    )
    return sizes, runs


def figures(results: dict) -> dict:
    n_train = results["data"]["n_train"]
    n = len(results["seeds"])
    fig, axes = new_figure(ncols=3, nrows=2, width=4.4, height=3.6)
    panels = list(MEASURES.items())
    for i, (ax, (metric, label)) in enumerate(zip(axes.flat[:4], panels, strict=True)):
        sizes, runs = _by_batch(results, metric)
        log = metric != "valley_width"
        mean_band(ax, sizes, runs, "mean, band min-max", COLORS[i], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        batch_axis(ax, sizes, n_train)
        ax.legend(fontsize=7)
    axes[1, 0].set_title(f"valley width at loss rise {results['valley_height']:g}", fontsize=9)
    for ax, (metric, label, log) in zip(
        axes.flat[4:],
        (("accuracy", "accuracy", False), ("loss", "cross-entropy loss", True)),
        strict=True,
    ):
        for i, split in enumerate(("train", "test")):
            sizes, runs = _by_batch(results, f"{split}_{metric}")
            mean_band(ax, sizes, runs, split, COLORS[i], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"training and test {label}", fontsize=9)
        batch_axis(ax, sizes, n_train)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Sharpness (ε={results['epsilon']:g}, {results['sharpness_examples']} training "
        f"examples) and accuracy vs batch size; n={n} seed(s) per batch size"
    )
    fig.tight_layout()
    figs = {"sharpness-vs-batch-size": fig}

    dinh = results["dinh"]
    a = [r["factor"] for r in dinh]
    ref = next(r for r in dinh if r["factor"] == 1.0)
    src = results["dinh_source"]
    fig, (ax, ax_r) = new_figure(ncols=2, width=5.2, height=4.2)
    for i, (metric, label) in enumerate(MEASURES.items()):
        ax.plot(
            a,
            [
                r[metric] / ref[metric] if r[metric] is not None and ref[metric] else np.nan
                for r in dinh
            ],
            "o-",
            color=COLORS[i],
            label=label.split(" (")[0],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="rescaling factor a (log scale)", ylabel="measure / its value at a = 1 (log)")
    ax.set_title("sharpness of the same function", fontsize=10)
    ax.legend(fontsize=7)
    ax2 = twin_axis(ax_r)
    for i, split in enumerate(("train", "test")):
        ax_r.plot(
            a, [r[f"{split}_loss"] for r in dinh], "o-", color=COLORS[i], label=f"{split} loss"
        )
        ax2.plot(
            a,
            [r[f"{split}_accuracy"] for r in dinh],
            "s--",
            color=COLORS[i],
            label=f"{split} accuracy (right)",
        )
    ax_r.set_xscale("log")
    losses = [r[f"{s}_loss"] for r in dinh for s in ("train", "test")]
    ax_r.set_ylim(0, 1.25 * max(losses))
    ax2.set_ylim(0, 1.02)
    ax_r.set(xlabel="rescaling factor a (log scale)", ylabel="cross-entropy loss (solid)")
    ax2.set_ylabel("accuracy (dashed)")
    ax_r.set_title("loss and accuracy: unchanged", fontsize=10)
    joint_legend(ax_r, ax2, fontsize=7, loc="lower center", ncol=2)
    fig.suptitle(
        f"Dinh et al.: layer {src['layer']} × a, layer {src['layer'] + 1} × 1/a "
        f"(one model: batch size {src['batch_size']}, seed {src['seed']}; n=1)",
        fontsize=10,
    )
    fig.tight_layout()
    figs["dinh-rescaling"] = fig
    return figs


def _trend(results: dict, metric: str) -> tuple[float, int]:
    """Spearman correlation of ``metric`` with log batch size over all runs, and n."""
    rows = [r for r in results["runs"] if r[metric] is not None and math.isfinite(r[metric])]
    rho = spearmanr([math.log(r["batch_size"]) for r in rows], [r[metric] for r in rows])[0]
    return float(rho), len(rows)


def _at(results: dict, metric: str, batch: int) -> tuple[float, float]:
    return mean_std(r[metric] for r in results["runs"] if r["batch_size"] == batch)


def _spread(rows: list[dict], metric: str) -> float:
    """max / min of ``metric`` over rows (missing values skipped)."""
    values = [r[metric] for r in rows if r[metric] is not None]
    return max(values) / min(values) if values else float("nan")


def summarize(results: dict) -> dict:
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    lo, hi = sizes[0], sizes[-1]
    out = {"batch sizes": sizes}
    for metric in (*MEASURES, "test_accuracy"):
        out[f"{metric}: mean at batch {lo} / {hi}"] = [
            _at(results, metric, lo)[0],
            _at(results, metric, hi)[0],
        ]
    for metric in MEASURES:
        out[f"{metric}: Spearman r with log batch size"] = _trend(results, metric)[0]
    for r in results["dinh"]:
        out[f"rescaled a={r['factor']:g}: train loss / test acc / hessian / keskar / ball"] = [
            r["train_loss"],
            r["test_accuracy"],
            r["hessian"],
            r["keskar"],
            r["ball"],
        ]
    for metric in MEASURES:
        out[f"rescaled: max/min of {metric} over a"] = _spread(results["dinh"], metric)
    return out


def observations(results: dict) -> list[str]:
    runs = results["runs"]
    sizes = sorted({r["batch_size"] for r in runs})
    lo, hi = sizes[0], sizes[-1]
    k = len(results["seeds"])
    lines = [
        f"{len(sizes)} batch sizes ({', '.join(map(str, sizes))}), {k} seed(s) each, "
        f"{min(r['steps'] for r in runs)}-{max(r['steps'] for r in runs)} optimizer steps; "
        f"model {'-'.join(map(str, results['model']['widths']))} "
        f"({results['model_params']} params)."
    ]
    for metric, label in MEASURES.items():
        rho, n = _trend(results, metric)
        (m_lo, _), (m_hi, _) = _at(results, metric, lo), _at(results, metric, hi)
        lines.append(
            f"{label}: {m_lo:.3g} at batch {lo} and {m_hi:.3g} at batch {hi} (mean of {k}); "
            f"Spearman r = {rho:+.2f} with log batch size over n = {n} runs."
        )
    (a_lo, _), (a_hi, _) = (_at(results, "test_accuracy", b) for b in (lo, hi))
    gap = [r["test_loss"] - r["train_loss"] for r in runs]
    rho_gap = float(spearmanr([r["hessian"] for r in runs], gap)[0])
    lines.append(
        f"Test accuracy is {a_lo:.3f} at batch {lo} and {a_hi:.3f} at batch {hi}; across all "
        f"n = {len(runs)} runs the Hessian sharpness correlates with the generalization gap "
        f"(test minus training loss) at Spearman r = {rho_gap:+.2f}."
    )
    dinh, src = results["dinh"], results["dinh_source"]
    a = [r["factor"] for r in dinh]
    loss_change = max(r["train_loss"] for r in dinh) - min(r["train_loss"] for r in dinh)
    acc_change = max(r["test_accuracy"] for r in dinh) - min(r["test_accuracy"] for r in dinh)
    lines.append(
        f"Dinh et al.: rescaling layer {src['layer']} by a and layer {src['layer'] + 1} by 1/a "
        f"(a from {min(a):g} to {max(a):g}, one model of batch size {src['batch_size']}) "
        f"changes the outputs by at most {max(r['max_output_change'] for r in dinh):.1e}, the "
        f"training loss by {loss_change:.1e} and the test accuracy by {acc_change:.3f}, while "
        f"the Hessian sharpness varies {_spread(dinh, 'hessian'):.1f}x, Keskar's "
        f"{_spread(dinh, 'keskar'):.1f}x, the ball's {_spread(dinh, 'ball'):.1f}x and the "
        f"valley width {_spread(dinh, 'valley_width'):.1f}x: the same function can be made "
        "sharp or flat."
    )
    return lines + diverged_lines(runs)


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d = results["model"], results["data"]
    steps = group_rows(results["runs"], "batch_size")
    src = results["dinh_source"]
    return [
        (
            "model",
            f"{describe_model(m)} ({results['model_params']} params)",
        ),
        ("data", data_setting(cfg, d)),
        ("batch sizes", ", ".join(str(b) for (b,) in steps)),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}, constant"),
        (
            "training length",
            f"about {cfg.steps} optimizer steps for every batch size (whole epochs): "
            + ", ".join(f"{b}: {rs[0]['epochs']} epochs" for (b,), rs in steps.items()),
        ),
        ("seeds", f"{len(results['seeds'])} per batch size"),
        (
            "sharpness",
            f"ε = {cfg.epsilon:g} on {results['sharpness_examples']} training examples, "
            f"float64; Keskar: {cfg.keskar_steps} L-BFGS-B iterations; ball: {cfg.ball_steps} "
            f"ascent steps; Hessian: Lanczos; valley: height {cfg.valley_height:g}, "
            f"{cfg.valley_directions} random directions",
        ),
        (
            "rescaling",
            f"factors {', '.join(format(r['factor'], 'g') for r in results['dinh'])} on layer "
            f"{src['layer']} (next layer 1/a), model of batch size {src['batch_size']}, "
            f"seed {src['seed']}",
        ),
    ]


EXPERIMENT = Experiment(
    id="sharpness",
    homework="HW1-3 bonus",
    title="Sharpness vs batch size, and the rescaling counterpoint",
    question="Do large batches find sharper minima (Keskar et al.), and does sharpness by "
    "itself explain generalization when the same function can be made sharp or flat "
    "(Dinh et al.)?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
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

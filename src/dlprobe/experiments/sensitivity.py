"""HW1-3 part 2: sensitivity (and sharpness) of models trained with different batch sizes.

Protocol: for each batch size, from 8 up to the whole training set, train a population of
seeds for the same number of optimizer steps; then measure, per model, the training and
test loss and accuracy, the input sensitivity by both definitions (the homework's: the norm
of the gradient of ONE example's loss with respect to its input, averaged over the test
set; Novak et al. 2018: the norm of the Jacobian of the class probabilities with respect
to the input) and the sharpness of the loss on training examples.

Why a fixed step budget and not a fixed number of epochs: with equal epochs a batch of 8
gets 125 times more updates than full batch on 1000 examples, so the largest batches would
stop far from any minimum and the comparison would measure under-training; equal steps
give every model the same number of updates and keep the run time bounded (the largest
batches would otherwise need thousands of epochs to match).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.measure.sharpness import METHODS as SHARPNESS_METHODS
from dlprobe.measure.sharpness import sharpness
from dlprobe.models import MLP, describe_model, mlp_param_count
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


# -- figures and numbers -----------------------------------------------------------------

SENSITIVITIES = {
    "sensitivity_loss_gradient": "sensitivity ‖∂loss/∂x‖ (homework)",
    "sensitivity_jacobian": "sensitivity ‖∂softmax/∂x‖ (Novak et al.)",
}


def _by_batch(results: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """Batch sizes (ascending) and an array (n_seeds, n_batch_sizes) of ``metric``."""
    groups = group_rows(results["runs"], "batch_size")
    sizes = sorted(b for (b,) in groups)
    runs = np.array(
        [[groups[(b,)][k][metric] for b in sizes] for k in range(len(results["seeds"]))],
        dtype=float,
    )
    return sizes, runs


def _two_axis_figure(results: dict, left: str, left_label: str, log_left: bool):
    n_train = results["data"]["n_train"]
    fig, ax = new_figure(width=7.0, height=4.6)
    for i, split in enumerate(("train", "test")):
        sizes, runs = _by_batch(results, f"{split}_{left}")
        mean_band(ax, sizes, runs, f"{split} {left_label}", COLORS[i], log=log_left)
    if log_left:
        ax.set_yscale("log")
    ax.set_ylabel(f"{left_label}{' (log scale)' if log_left else ''}")
    ax2 = twin_axis(ax)
    sizes, runs = _by_batch(results, "sensitivity_loss_gradient")
    mean_band(ax2, sizes, runs, "sensitivity (right axis)", COLORS[2])
    for line in ax2.get_lines():
        line.set_linestyle("--")
    ax2.set_ylabel("sensitivity: mean ‖∂loss/∂x‖ over test examples", color=COLORS[2])
    batch_axis(ax, sizes, n_train)
    joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title(
        f"{left_label.capitalize()} and sensitivity vs batch size "
        f"({results['data']['name']}, n={len(results['seeds'])} seeds per batch size)",
        fontsize=10,
    )
    return fig


def figures(results: dict) -> dict:
    figs = {
        "loss-sensitivity": _two_axis_figure(results, "loss", "cross-entropy loss", True),
        "accuracy-sensitivity": _two_axis_figure(results, "accuracy", "accuracy", False),
    }
    n_train = results["data"]["n_train"]
    n = len(results["seeds"])
    fig, axes = new_figure(ncols=3, width=4.4, height=4.0)
    panels = [
        *SENSITIVITIES.items(),
        ("sharpness", f"sharpness ({results['sharpness_method']}, ε={results['epsilon']:g})"),
    ]
    for i, (ax, (metric, label)) in enumerate(zip(axes, panels, strict=True)):
        sizes, runs = _by_batch(results, metric)
        log = metric == "sharpness"
        mean_band(ax, sizes, runs, "mean, band min-max", COLORS[i + 2], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        batch_axis(ax, sizes, n_train)
        ax.legend(fontsize=8)
    for ax in axes[:2]:
        ax.set_ylabel(f"Frobenius norm, mean over {results['sensitivity_examples']} test examples")
    axes[2].set_ylabel(f"relative loss rise, {results['sharpness_examples']} training examples")
    fig.suptitle(f"Both sensitivities and sharpness vs batch size (n={n} seeds per batch size)")
    fig.tight_layout()
    figs["sensitivity-sharpness"] = fig
    return figs


def _trend(results: dict, metric: str) -> tuple[float, int]:
    """Spearman correlation of ``metric`` with log batch size over all runs, and n."""
    rows = [r for r in results["runs"] if r[metric] is not None and math.isfinite(r[metric])]
    rho = spearmanr([math.log(r["batch_size"]) for r in rows], [r[metric] for r in rows])[0]
    return float(rho), len(rows)


def _at(results: dict, metric: str, batch: int) -> tuple[float, float]:
    return mean_std(r[metric] for r in results["runs"] if r["batch_size"] == batch)


def summarize(results: dict) -> dict:
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    lo, hi = sizes[0], sizes[-1]
    out = {"batch sizes": sizes}
    for metric in (
        "sensitivity_loss_gradient",
        "sensitivity_jacobian",
        "sharpness",
        "test_accuracy",
        "train_loss",
    ):
        out[f"{metric}: mean at batch {lo} / {hi}"] = [
            _at(results, metric, lo)[0],
            _at(results, metric, hi)[0],
        ]
    for metric in ("sensitivity_loss_gradient", "sensitivity_jacobian", "sharpness"):
        out[f"{metric}: Spearman r with log batch size"] = _trend(results, metric)[0]
    return out


def observations(results: dict) -> list[str]:
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    lo, hi = sizes[0], sizes[-1]
    k = len(results["seeds"])
    lines = [
        f"{len(sizes)} training approaches (batch sizes {', '.join(map(str, sizes))}), "
        f"{k} seeds each, trained for {min(r['steps'] for r in results['runs'])}-"
        f"{max(r['steps'] for r in results['runs'])} optimizer steps."
    ]
    for metric, name in (
        ("sensitivity_loss_gradient", "the homework's sensitivity (loss gradient)"),
        ("sensitivity_jacobian", "Novak et al.'s sensitivity (softmax Jacobian)"),
        ("sharpness", f"the {results['sharpness_method']} sharpness"),
    ):
        rho, n = _trend(results, metric)
        (m_lo, s_lo), (m_hi, s_hi) = _at(results, metric, lo), _at(results, metric, hi)
        direction = "falls" if rho < 0 else "rises"
        lines.append(
            f"As batch size grows, {name} {direction} (Spearman r = {rho:+.2f} with log batch "
            f"size over n = {n} runs): {m_lo:.3g} ± {s_lo:.2g} at batch {lo} vs "
            f"{m_hi:.3g} ± {s_hi:.2g} at batch {hi} (mean ± sd over {k} seeds)."
        )
    (a_lo, sa_lo), (a_hi, sa_hi) = (_at(results, "test_accuracy", b) for b in (lo, hi))
    (t_lo, _), (t_hi, _) = (_at(results, "train_accuracy", b) for b in (lo, hi))
    lines.append(
        f"Test accuracy is {a_lo:.3f} ± {sa_lo:.3f} at batch {lo} and {a_hi:.3f} ± {sa_hi:.3f} "
        f"at batch {hi} (training accuracy {t_lo:.3f} and {t_hi:.3f})."
    )
    rho, _ = _trend(results, "sensitivity_loss_gradient")
    agrees = rho < 0 and a_hi <= a_lo
    lines.append(
        "Reference (homework, MNIST): sensitivity falls from about 0.3-0.6 to near 0 as batch "
        "size grows while test accuracy drops slightly; here the sensitivity "
        f"{'falls' if rho < 0 else 'does not fall'} and test accuracy "
        f"{'drops' if a_hi <= a_lo else 'rises'} by {abs(a_lo - a_hi):.3f}, "
        f"{'the same pattern' if agrees else 'a different pattern'}."
    )
    if not agrees:
        lines.append(
            "Two things to weigh against the reference: dividing the gradient of a batch-mean "
            "loss by the dataset size again (a pitfall of published solutions) makes "
            "sensitivity fall as 1/batch size by construction, whereas dlprobe measures it per "
            "example; and the loss-gradient sensitivity grows with the test loss, so it "
            f"follows how far each model overfits (test loss {_at(results, 'test_loss', lo)[0]:.3g} "
            f"at batch {lo} vs {_at(results, 'test_loss', hi)[0]:.3g} at batch {hi} here)."
        )
    return lines + diverged_lines(results["runs"])


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d = results["model"], results["data"]
    steps = group_rows(results["runs"], "batch_size")
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
            + ", ".join(
                f"{b}: {rs[0]['steps']} steps = {rs[0]['epochs']} epochs"
                for (b,), rs in steps.items()
            ),
        ),
        (
            "seeds",
            f"{len(results['seeds'])} per batch size ({cfg.seed}..{cfg.seed + cfg.seeds - 1})",
        ),
        (
            "sensitivity",
            f"both definitions, per example, averaged over {results['sensitivity_examples']} "
            "test examples (never divided by the dataset size)",
        ),
        (
            "sharpness",
            f"{results['sharpness_method']}, ε = {results['epsilon']:g}, on "
            f"{results['sharpness_examples']} training examples, float64",
        ),
    ]


EXPERIMENT = Experiment(
    id="sensitivity",
    homework="HW1-3",
    title="Sensitivity and sharpness vs batch size",
    question="Do models trained with larger batches have a different input sensitivity, and "
    "does sensitivity track generalization?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "loss-sensitivity": "training and test loss (left, log scale) and the homework's "
        "sensitivity (right, dashed) against batch size; line = mean over seeds (geometric "
        "for the loss), band = min-max",
        "accuracy-sensitivity": "training and test accuracy (left) and the homework's "
        "sensitivity (right, dashed) against batch size; line = mean, band = min-max over seeds",
        "sensitivity-sharpness": "the two sensitivity definitions and the sharpness against "
        "batch size; line = mean over seeds, band = min-max",
    },
    quick_minutes=0.5,
    full_differs="mnist1d (1000 training examples, MLP 40-64-64-10) and 2000 steps per model "
    "instead of MNIST with batch sizes 8 to 4096 and the full set.",
)

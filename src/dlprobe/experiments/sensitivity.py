"""HW1-3: input sensitivity (and sharpness) of models trained with different batch sizes.

Protocol: for each batch size, from 8 up to the whole training set, train a population of
seeds for the same number of optimizer steps (kit.batches says why steps); then measure,
per model, the training and test loss and accuracy, the input sensitivity by both
definitions (the homework's: the norm of the gradient of ONE example's loss with respect
to its input, averaged over test examples; Novak et al. 2018: the Frobenius norm of the
Jacobian of the class probabilities with respect to the input) and the sharpness of the
loss on training examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    mean_band,
    mlp_population,
    new_figure,
    one_of,
    probe_examples,
    require,
    seeds_from,
)
from dlprobe.experiments.kit.batches import (
    Budget,
    at_batch,
    batch_panel,
    batch_sizes_of,
    batch_summary,
    batch_trend,
    by_batch,
    check_sweep,
    length_table,
    model_and_data,
    model_and_data_table,
    train_sweep,
)
from dlprobe.experiments.kit.plotting import joint_legend, twin_axis
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.measure.sharpness import METHODS as SHARPNESS_METHODS
from dlprobe.measure.sharpness import sharpness
from dlprobe.train import TrainConfig

SharpnessMethod = one_of(SHARPNESS_METHODS, "sharpness method")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    # training examples, a seeded subset (0: the whole training set); keeps full batch cheap
    train_subset: NonNegInt = 1000
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    # examples per optimizer step, one population each; 0 = the whole training set
    batch_sizes: tuple[NonNegInt, ...] = (8, 16, 32, 64, 128, 256, 512, 0)
    budget: Budget = Budget(steps=2000)  # how long every model trains
    seeds: PosInt = 3  # models per batch size, trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also the training subset and probes
    sensitivity_examples: NonNegInt = 0  # test examples sensitivity is averaged over; 0 = all
    # hessian: ‖H‖₂ ε² / (2 (1 + L)); keskar: box maximum; ball: maximum in the ε-ball
    sharpness_method: SharpnessMethod = "hessian"
    sharpness_examples: PosInt = 500  # training examples of the loss whose sharpness is probed
    epsilon: PosFloat = 1e-4  # sharpness neighbourhood size (relative, per parameter)
    eval_batch_size: PosInt = 1000  # examples per chunk of per-example gradients (memory only)
    # optimizer and learning rate of every model; batch size and epochs come from
    # batch_sizes and the budget, and the models are evaluated at the end only
    train: TrainConfig = TrainConfig()

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)
        check_sweep(self.batch_sizes, self.dataset, self.train_subset, self.train)


PROFILES = {
    "smoke": {
        "train_subset": 200,
        "hidden": (16,),
        "batch_sizes": (8, 16, 32, 64, 0),
        "budget.steps": 30,
        "seeds": 2,
        "sensitivity_examples": 200,
        "sharpness_examples": 100,
    },
    "full": {
        "dataset": "mnist",
        "train_subset": 0,
        "hidden": (256, 256),
        "batch_sizes": (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 0),
        "budget.steps": 10000,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    n_sens = cfg.sensitivity_examples or data.n_test
    x_sens, y_sens = data.x_test[:n_sens], data.y_test[:n_sens]  # (n_sens, ...), (n_sens,)
    x_sharp, y_sharp = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    setup = model_and_data(data, cfg.hidden, cfg.activation)
    widths = setup["model"]["widths"]
    population = partial(mlp_population, widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)

    def probe(model) -> dict:
        return measure(model, cfg, x_sens, y_sens, x_sharp, y_sharp)

    sweep = train_sweep(ctx, data, population, cfg.train, cfg.batch_sizes, cfg.budget, probe)
    return {
        **setup,
        "sensitivity_examples": n_sens,
        "sharpness_examples": int(x_sharp.shape[0]),
        "sharpness_method": cfg.sharpness_method,
        "epsilon": cfg.epsilon,
        "seeds": seeds_from(cfg.seed, cfg.seeds),
        "runs": [row for _key, _pop, records in sweep for row in records],
    }


def measure(model, cfg: Config, x_sens, y_sens, x_sharp, y_sharp) -> dict:
    """Both sensitivities (on test examples) and the sharpness (on training examples)."""
    chunk = cfg.eval_batch_size
    s_grad = sensitivity(model, x_sens, y_sens, F.cross_entropy, "loss-gradient", chunk)
    s_jac = sensitivity(model, x_sens, None, None, "jacobian", chunk)
    sharp = sharpness(
        model, F.cross_entropy, x_sharp, y_sharp, cfg.epsilon, cfg.sharpness_method, seed=cfg.seed
    )
    return {
        "sensitivity_loss_gradient": s_grad.mean,
        "sensitivity_jacobian": s_jac.mean,
        "sharpness": sharp.value,
        "hessian_norm": sharp.hessian_norm,
    }


SENSITIVITIES = {
    "sensitivity_loss_gradient": "sensitivity ‖∂loss/∂x‖ (homework)",
    "sensitivity_jacobian": "sensitivity ‖∂softmax/∂x‖ (Novak et al.)",
}


def _two_axis_figure(results: dict, left: str, left_label: str, log_left: bool):
    runs, n_train = results["runs"], results["dataset"]["n_train"]
    fig, ax = new_figure(width=7.0, height=4.6)
    splits = {f"{s}_{left}": f"{s} {left_label}" for s in ("train", "test")}
    batch_panel(ax, runs, n_train, splits, log=log_left)
    ax.set_ylabel(f"{left_label}{' (log scale)' if log_left else ''}")
    ax2 = twin_axis(ax)
    sizes, values = by_batch(runs, "sensitivity_loss_gradient")  # (n_seeds, n_sizes)
    mean_band(ax2, sizes, values, "sensitivity (right axis)", COLORS[2])
    for line in ax2.get_lines():
        line.set_linestyle("--")
    ax2.set_ylabel("sensitivity: mean ‖∂loss/∂x‖ over test examples", color=COLORS[2])
    joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title(
        f"{left_label.capitalize()} and sensitivity vs batch size "
        f"({results['dataset']['name']}, n={len(results['seeds'])} seeds per batch size)",
        fontsize=10,
    )
    return fig


def figures(results: dict) -> dict:
    runs, n_train = results["runs"], results["dataset"]["n_train"]
    figs = {
        "loss-sensitivity": _two_axis_figure(results, "loss", "cross-entropy loss", True),
        "accuracy-sensitivity": _two_axis_figure(results, "accuracy", "accuracy", False),
    }
    fig, axes = new_figure(ncols=3, width=4.4, height=4.0)
    panels = [
        *SENSITIVITIES.items(),
        ("sharpness", f"sharpness ({results['sharpness_method']}, ε={results['epsilon']:g})"),
    ]
    for i, (ax, (metric, label)) in enumerate(zip(axes, panels, strict=True)):
        log = metric == "sharpness"
        batch_panel(ax, runs, n_train, {metric: "mean, band min-max"}, log=log, first_color=i + 2)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    for ax in axes[:2]:
        ax.set_ylabel(f"Frobenius norm, mean over {results['sensitivity_examples']} test examples")
    axes[2].set_ylabel(f"relative loss rise, {results['sharpness_examples']} training examples")
    fig.suptitle(
        f"Both sensitivities and sharpness vs batch size "
        f"(n={len(results['seeds'])} seeds per batch size)"
    )
    fig.tight_layout()
    figs["sensitivity-sharpness"] = fig
    return figs


TRENDS = {
    "sensitivity_loss_gradient": "the homework's sensitivity (loss gradient)",
    "sensitivity_jacobian": "Novak et al.'s sensitivity (softmax Jacobian)",
    "sharpness": "the {method} sharpness",
}


def notes(results: dict) -> Notes:
    runs, k = results["runs"], len(results["seeds"])
    sizes = batch_sizes_of(runs)
    lo, hi = sizes[0], sizes[-1]
    lines = [
        f"{len(sizes)} training approaches (batch sizes {', '.join(map(str, sizes))}), "
        f"{k} seeds each, trained for {min(r['steps'] for r in runs)}-"
        f"{max(r['steps'] for r in runs)} optimizer steps."
    ]
    for metric, name in TRENDS.items():
        rho, n = batch_trend(runs, metric)
        (m_lo, s_lo), (m_hi, s_hi) = at_batch(runs, metric, lo), at_batch(runs, metric, hi)
        lines.append(
            f"As batch size grows, {name.format(method=results['sharpness_method'])} "
            f"{'falls' if rho < 0 else 'rises'} (Spearman r = {rho:+.2f} with log batch "
            f"size over n = {n} runs): {m_lo:.3g} ± {s_lo:.2g} at batch {lo} vs "
            f"{m_hi:.3g} ± {s_hi:.2g} at batch {hi} (mean ± sd over {k} seeds)."
        )
    (a_lo, sa_lo), (a_hi, sa_hi) = (at_batch(runs, "test_accuracy", b) for b in (lo, hi))
    (t_lo, _), (t_hi, _) = (at_batch(runs, "train_accuracy", b) for b in (lo, hi))
    lines.append(
        f"Test accuracy is {a_lo:.3f} ± {sa_lo:.3f} at batch {lo} and {a_hi:.3f} ± {sa_hi:.3f} "
        f"at batch {hi} (training accuracy {t_lo:.3f} and {t_hi:.3f})."
    )
    rho, _ = batch_trend(runs, "sensitivity_loss_gradient")
    agrees = rho < 0 and a_hi <= a_lo
    lines.append(
        "Reference (homework, MNIST): sensitivity falls from about 0.3-0.6 to near 0 as batch "
        "size grows while test accuracy drops slightly; here the sensitivity "
        f"{'falls' if rho < 0 else 'does not fall'} and test accuracy "
        f"{'drops' if a_hi <= a_lo else 'rises'} by {abs(a_lo - a_hi):.3f}, "
        f"{'the same pattern' if agrees else 'a different pattern'}."
    )
    if not agrees:
        (loss_lo, _), (loss_hi, _) = (at_batch(runs, "test_loss", b) for b in (lo, hi))
        lines.append(
            "Two things to weigh against the reference: dividing the gradient of a batch-mean "
            "loss by the dataset size again (a pitfall of published solutions) makes "
            "sensitivity fall as 1/batch size by construction, whereas dlprobe measures it per "
            "example; and the loss-gradient sensitivity grows with the test loss, so it "
            f"follows how far each model overfits (test loss {loss_lo:.3g} at batch {lo} vs "
            f"{loss_hi:.3g} at batch {hi} here)."
        )
    lines += diverged_lines(runs)
    probes = {
        "sensitivity": "both definitions, per example (never divided by the dataset size)",
        "test examples": results["sensitivity_examples"],
        "sharpness": f"{results['sharpness_method']}, ε = {results['epsilon']:g}, float64",
        "training examples": results["sharpness_examples"],
    }
    tables = [model_and_data_table(results), length_table(runs), ("Probes", [probes])]
    summary = batch_summary(runs, (*TRENDS, "test_accuracy", "train_loss"), TRENDS)
    return Notes(summary, lines, tables)


EXPERIMENT = Experiment(
    id="sensitivity",
    item="HW1-3",
    part="hw1-3",
    rank=4,
    title="Sensitivity and sharpness vs batch size",
    question="Do models trained with larger batches have a different input sensitivity, and "
    "does sensitivity track generalization?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
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

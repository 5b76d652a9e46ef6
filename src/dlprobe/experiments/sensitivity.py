"""HW1-3: input sensitivity (and sharpness) of models trained with different batch sizes.

Protocol: for each batch size, from 8 up to the whole training set, train a population of
seeds under a common budget (kit.batches): by default each model until its training loss is
below a target, so every batch size is compared where it reached the same loss; with
``--protocol all`` also for equal epochs and equal steps, side by side. Then measure, per
model, the training and test loss and accuracy, the input sensitivity by both definitions
(the homework's: the norm of the gradient of ONE example's loss with respect to its input,
averaged over test examples; Novak et al. 2018: the Frobenius norm of the Jacobian of the
class probabilities with respect to the input), the sharpness of the loss on training
examples, and the gradient norm where that sharpness was measured.
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
    batches,
    check_classifier_fits,
    column,
    fidelity_row,
    mean_band,
    mlp_population,
    new_figure,
    one_of,
    probe_examples,
    require,
    seeds_from,
)
from dlprobe.experiments.kit.plotting import joint_legend, twin_axis
from dlprobe.measure.gradient import gradient_norm
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.measure.sharpness import METHODS as SHARPNESS_METHODS
from dlprobe.measure.sharpness import sharpness
from dlprobe.train import TrainConfig

SharpnessMethod = one_of(SHARPNESS_METHODS, "sharpness method")


@dataclass(frozen=True)
class Config:
    # classification dataset (see `dlprobe datasets`); digits: MLPs reach ~0.97 test
    # accuracy there, the homework's MNIST regime (mnist1d MLPs overfit to ~0.5)
    dataset: DatasetName = "digits"
    train_subset: NonNegInt = 0  # training examples, a seeded subset (0: the whole set)
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    # examples per optimizer step, one population each; 0 = the whole training set
    batch_sizes: tuple[NonNegInt, ...] = (8, 16, 32, 64, 128, 256, 512, 0)
    budget: batches.Budget = batches.Budget()  # how long every model trains
    seeds: PosInt = 3  # models per batch size, trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also the training subset and probes
    sensitivity_examples: NonNegInt = 0  # test examples sensitivity is averaged over; 0 = all
    # hessian: ‖H‖₂ ε² / (2 (1 + L)); keskar: box maximum; ball: maximum in the ε-ball
    sharpness_method: SharpnessMethod = "hessian"
    sharpness_examples: PosInt = 500  # training examples of the loss whose sharpness is probed
    epsilon: PosFloat = 1e-4  # sharpness neighbourhood: ball radius (keskar: relative box)
    eval_batch_size: PosInt = 1000  # examples per chunk of per-example gradients (memory only)
    # optimizer and learning rate of every model; batch size, length and stop targets come
    # from batch_sizes and the budget
    train: TrainConfig = TrainConfig()

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        models = self.seeds * len(self.budget.protocols)
        check_classifier_fits(self.dataset, self.hidden, self.activation, models)
        batches.check_sweep(self.batch_sizes, self.dataset, self.train_subset, self.train)


PROFILES = {
    "smoke": {
        "train_subset": 200,
        "hidden": (16,),
        "batch_sizes": (8, 16, 32, 64, 0),
        "budget.protocol": "all",
        "budget.train_loss": 0.05,
        "budget.max_epochs": 300,
        "budget.epochs": 3,
        "budget.steps": 40,
        "train.lr": 1e-2,
        "seeds": 2,
        "sensitivity_examples": 200,
        "sharpness_examples": 100,
    },
    "full": {
        "dataset": "mnist",
        "hidden": (256, 256),
        "batch_sizes": (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 0),
        "budget.max_epochs": 3000,
        "budget.steps": 10000,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    n_sens = cfg.sensitivity_examples or data.n_test
    x_sens, y_sens = data.x_test[:n_sens], data.y_test[:n_sens]  # (n_sens, ...), (n_sens,)
    x_sharp, y_sharp = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    setup = batches.model_and_data(data, cfg.hidden, cfg.activation)
    widths = setup["model"]["widths"]
    population = partial(mlp_population, widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)

    def probe(model) -> dict:
        return measure(model, cfg, x_sens, y_sens, x_sharp, y_sharp)

    sweep = batches.train_sweep(
        ctx, data, population, cfg.train, cfg.batch_sizes, cfg.budget, probe, PROBED
    )
    return {
        **setup,
        "budget": cfg.budget.record(),
        "sensitivity_examples": n_sens,
        "sharpness_examples": int(x_sharp.shape[0]),
        "sharpness_method": cfg.sharpness_method,
        "epsilon": cfg.epsilon,
        "seeds": seeds_from(cfg.seed, cfg.seeds),
        "runs": [row for _key, _pop, records in sweep for row in records],
    }


def measure(model, cfg: Config, x_sens, y_sens, x_sharp, y_sharp) -> dict:
    """Both sensitivities (on test examples), the sharpness and, on the same training
    examples, the gradient norm (the Hessian estimate assumes it is near zero)."""
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
        "grad_norm": gradient_norm(model, F.cross_entropy, x_sharp, y_sharp),
    }


PROBED = ("sensitivity_loss_gradient", "sensitivity_jacobian", "sharpness", "hessian_norm")
PROBED += ("grad_norm",)  # the keys measure() returns
SENSITIVITIES = {
    "sensitivity_loss_gradient": "sensitivity ‖∂loss/∂x‖ (homework)",
    "sensitivity_jacobian": "sensitivity ‖∂softmax/∂x‖ (Novak et al.)",
}


def _two_axis_figure(results: dict, left: str, left_label: str, log_left: bool):
    runs, n_train = batches.main_runs(results["runs"]), results["dataset"]["n_train"]
    fig, ax = new_figure(width=7.0, height=4.6)
    splits = {f"{s}_{left}": f"{s} {left_label}" for s in ("train", "test")}
    batches.batch_panel(ax, runs, n_train, splits, log=log_left)
    ax.set_ylabel(f"{left_label}{' (log scale)' if log_left else ''}")
    ax2 = twin_axis(ax)
    sizes, values = batches.by_batch(runs, "sensitivity_loss_gradient")  # (n_seeds, n_sizes)
    mean_band(ax2, sizes, values, "sensitivity (right axis)", COLORS[2])
    for line in ax2.get_lines():
        line.set_linestyle("--")
    if not runs:
        ax2.set_yticks([])  # nothing counted: no scale to read
    ax2.set_ylabel("sensitivity: mean ‖∂loss/∂x‖ over test examples", color=COLORS[2])
    joint_legend(ax, ax2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title(
        f"{left_label.capitalize()} and sensitivity vs batch size ({results['dataset']['name']},"
        f" {batches.main_label(results)}; n={len(runs)} models)",
        fontsize=10,
    )
    return fig


def figures(results: dict) -> dict:
    n_sens, n_sharp = results["sensitivity_examples"], results["sharpness_examples"]
    sharp = f"sharpness ({results['sharpness_method']}, ε={results['epsilon']:g})"
    panels = [
        (f"{label}, mean over {n_sens} test examples", {metric: "mean, band min-max"}, False)
        for metric, label in SENSITIVITIES.items()
    ] + [(f"{sharp}, {n_sharp} training examples", {"sharpness": "mean, band min-max"}, True)]
    rows = {
        "sensitivity_loss_gradient": ("sensitivity ‖∂loss/∂x‖", False),
        "test_accuracy": ("test accuracy", False),
    }
    return {
        "loss-sensitivity": _two_axis_figure(results, "loss", "cross-entropy loss", True),
        "accuracy-sensitivity": _two_axis_figure(results, "accuracy", "accuracy", False),
        "sensitivity-sharpness": batches.batch_grid(
            results, panels, 3, "Both sensitivities and sharpness vs batch size"
        ),
        "budget-protocols": batches.protocol_figure(results, rows, "Sensitivity vs batch size"),
    }


TRENDS = {
    "sensitivity_loss_gradient": "the homework's sensitivity (loss gradient)",
    "sensitivity_jacobian": "Novak et al.'s sensitivity (softmax Jacobian)",
    "sharpness": "the {method} sharpness",
}


def notes(results: dict) -> Notes:
    all_runs, main = results["runs"], batches.protocols_of(results["runs"])[0]
    runs = batches.main_runs(all_runs)
    lines = batches.intro_lines(results, f"{results['model_params']}-parameter MLPs")
    tables = [batches.model_and_data_table(results), batches.reached_table(all_runs)]
    if not runs:
        return Notes(batches.batch_summary(all_runs, (), ()), lines, tables)
    lo, hi = batches.batch_sizes_of(runs)[0], batches.batch_sizes_of(runs)[-1]
    names = {m: n.format(method=results["sharpness_method"]) for m, n in TRENDS.items()}
    lines += batches.main_trend_lines(runs, names, main)
    (a_lo, sa_lo), (a_hi, sa_hi) = (batches.at_batch(runs, "test_accuracy", b) for b in (lo, hi))
    (t_lo, _), (t_hi, _) = (batches.at_batch(runs, "train_accuracy", b) for b in (lo, hi))
    lines.append(
        f"Test accuracy is {a_lo:.3f} ± {sa_lo:.3f} at batch {lo} and {a_hi:.3f} ± {sa_hi:.3f} "
        f"at batch {hi} (training accuracy {t_lo:.3f} and {t_hi:.3f})."
    )
    lines += batches.protocol_lines(all_runs, names)
    rho, p, n = batches.spearman_p(
        column(runs, "test_loss"), column(runs, "sensitivity_loss_gradient")
    )
    lines.append(
        "Confound: an example's loss-gradient sensitivity scales with 1 - p(its class), so it "
        f"tracks the test loss; across these n = {n} models ρ = {rho:+.2f} (p = {p:.2g}): "
        + (
            "its differences between batch sizes are partly differences in test loss."
            if batches.direction(rho, p) != batches.NO_TREND
            else "here that link is not significant."
        )
    )
    lines.append(batches.gap_line(runs, "sensitivity_loss_gradient", "the homework's sensitivity"))
    lines.append(batches.critical_point_line(runs, results["epsilon"]))
    probes = {
        "sensitivity": "both definitions, per example (never divided by the dataset size)",
        "test examples": results["sensitivity_examples"],
        "sharpness": f"{results['sharpness_method']}, ε = {results['epsilon']:g}, float64",
        "training examples": results["sharpness_examples"],
    }
    summary = batches.batch_summary(all_runs, (*TRENDS, "test_accuracy", "train_loss"), TRENDS)
    fidelity = _fidelity(results, runs, lo, hi)
    return Notes(summary, lines, [*tables, ("Probes", [probes])], fidelity)


def _fidelity(results: dict, runs: list[dict], lo: int, hi: int) -> list[dict]:
    (a_lo, sd_lo), (a_hi, sd_hi) = (batches.at_batch(runs, "test_accuracy", b) for b in (lo, hi))
    drop = a_lo - a_hi
    return [
        *(
            batches.trend_row(
                results,
                metric,
                f"{name} falls as batch size grows",
                "MNIST: about 0.3-0.6 at small batches down to near 0",
                "falls",
            )
            for metric, name in SENSITIVITIES.items()
        ),
        fidelity_row(
            "test accuracy drops slightly as batch size grows",
            "a slight drop (MNIST)",
            f"{a_lo:.3f} ± {sd_lo:.3f} at batch {lo} → {a_hi:.3f} ± {sd_hi:.3f} at batch {hi}",
            0 < drop <= 0.05,
            f"it {'rises' if drop <= 0 else 'drops'} by {abs(drop):.3f}",
        ),
        batches.standin_row(results, runs),
    ]


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
        "sensitivity (right, dashed) against batch size, models that met the budget's target; "
        "line = mean over seeds (geometric for the loss), band = min-max",
        "accuracy-sensitivity": "training and test accuracy (left) and the homework's "
        "sensitivity (right, dashed) against batch size; line = mean, band = min-max over seeds",
        "sensitivity-sharpness": "the two sensitivity definitions and the sharpness against "
        "batch size; line = mean over seeds, band = min-max",
        "budget-protocols": batches.protocol_caption("the homework's sensitivity, test accuracy"),
    },
    quick_minutes=0.6,
    full_differs="scikit-learn digits, where MLPs reach MNIST's ~0.97 test accuracy (1347 "
    "training examples, MLP 64-64-64-10), instead of MNIST, batch sizes to 4096, 256-256 units.",
)

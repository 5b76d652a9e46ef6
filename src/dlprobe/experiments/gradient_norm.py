"""HW1-2 gradient norm during training: the gradient norm and the loss at every iteration.

Protocol: two tasks, each trained as a population of seeds with per-step recording. At
every iteration the trainer logs the minibatch loss and the 2-norm of its gradient over
all parameters, both at the parameters before that iteration's update. Task 1 fits a
1-D function with a small MLP; task 2 classifies a dataset (mnist1d) with an MLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from dlprobe.data import DATASETS, FUNCTIONS
from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    DatasetName,
    Experiment,
    FunctionName,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_batch_sizes,
    check_classifier_fits,
    check_mlp_fits,
    mlp_population,
    n_train_of,
    new_figure,
    parse_widths,
    require,
    sci,
    series,
    spearman,
)
from dlprobe.models import describe_model, mlp_param_count
from dlprobe.train import TrainConfig

TASKS = ("function", "classification")


@dataclass(frozen=True)
class Config:
    function: FunctionName = "sinc"  # target of the regression task
    function_model: str = "1-20-20-1"  # layer widths of the regression MLP (1 in, 1 out)
    n_points: Annotated[int, Bound(ge=2)] = 256  # regression points, evenly spaced on the domain
    # regression training: every iteration recorded (record_steps), evaluation at the end only
    function_train: TrainConfig = TrainConfig(
        epochs=300, batch_size=32, eval_every_epochs=300, record_steps=True
    )
    dataset: DatasetName = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden-layer widths of the classification MLP
    # classification training: every iteration recorded, evaluation at the end only
    dataset_train: TrainConfig = TrainConfig(
        epochs=20, batch_size=100, eval_every_epochs=20, record_steps=True
    )
    activation: Activation = "relu"  # hidden activation of both MLPs
    seeds: PosInt = 3  # training runs per task, trained as one population
    seed: Seed = 0  # base seed: run i uses seed + i

    def check(self) -> None:
        widths = parse_widths(self.function_model)
        require(
            widths[0] == 1 and widths[-1] == 1,
            f"function_model must map 1 input to 1 output, got {self.function_model!r}",
        )
        require(len(self.hidden) >= 1, "hidden must list >= 1 width")
        check_mlp_fits(widths, self.activation, self.seeds)
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)
        check_batch_sizes(
            [self.function_train.batch_size], self.n_points, "function_train.batch_size"
        )
        n_train = n_train_of(self.dataset)
        check_batch_sizes([self.dataset_train.batch_size], n_train, "dataset_train.batch_size")
        for name in ("function_train", "dataset_train"):
            require(
                getattr(self, name).record_steps,
                f"{name}.record_steps must be true: every iteration's record is the point here",
            )


PROFILES = {
    "smoke": {
        "function_model": "1-8-8-1",
        "n_points": 64,
        "function_train.epochs": 5,
        "function_train.batch_size": 16,
        "hidden": (16,),
        "dataset_train.epochs": 1,
        "dataset_train.batch_size": 500,
        "seeds": 2,
    },
    "full": {
        "dataset": "mnist",
        "function_train.epochs": 1000,
        "dataset_train.epochs": 10,
        "seeds": 5,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    regression = ctx.function(cfg.function, cfg.n_points)
    classification = ctx.dataset(cfg.dataset)
    classifier = [classification.input_dim, *cfg.hidden, classification.num_classes]
    setups = [  # task, data name, title, data, layer widths, training
        (
            "function",
            cfg.function,
            FUNCTIONS[cfg.function].formula,
            regression,
            parse_widths(cfg.function_model),
            cfg.function_train,
        ),
        (
            "classification",
            cfg.dataset,
            DATASETS[cfg.dataset].description.split(":")[0],  # e.g. "mnist1d"
            classification,
            classifier,
            cfg.dataset_train,
        ),
    ]
    tasks, steps = [], []
    for task, name, title, data, widths, train in setups:
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
        hist = ctx.train(task, pop, data, train)
        tasks.append(
            {
                "task": task,
                "name": name,
                "title": title,
                "spec": {"kind": "mlp", "widths": widths, "activation": cfg.activation},
                "params": mlp_param_count(widths, cfg.activation),
                "loss": "MSE" if data.task == "regression" else "cross-entropy",
                "n_train": data.n_train,
                "batch_size": train.batch_size_for(data.n_train),
                "epochs": train.epochs,
                "steps_per_epoch": train.steps_per_epoch(data.n_train),
                "diverged_seeds": [pop.seeds[k] for k in hist.diverged],
            }
        )
        steps += [
            {
                "task": task,
                "seed": pop.seeds[r["model"]],
                "iteration": r["step"] + 1,
                "loss": r["loss"],
                "grad_norm": r["grad_norm"],
            }
            for r in hist.step_records()
        ]
    return {"tasks": tasks, "steps": steps, "seeds": pop.seeds}


def _runs(results: dict, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """iterations (T,), losses (n_seeds, T), grad norms (n_seeds, T) of one task."""
    rows = [r for r in results["steps"] if r["task"] == task]
    its, loss = series(rows, "iteration", "loss")
    _, norm = series(rows, "iteration", "grad_norm")
    return np.array(its), loss, norm


def _moving_median(v: np.ndarray, window: int) -> np.ndarray:
    """Centred running median along the last axis (shrinking window at the ends)."""
    half = window // 2
    return np.stack(
        [
            np.nanmedian(v[..., max(0, i - half) : i + half + 1], axis=-1)
            for i in range(v.shape[-1])
        ],
        axis=-1,
    )


def figures(results: dict) -> dict:
    figs = {}
    seeds = results["seeds"]
    for t in results["tasks"]:
        its, loss, norm = _runs(results, t["task"])
        window = max(1, min(t["steps_per_epoch"], len(its) // 20))
        fig, (ax_loss, ax_norm) = new_figure(nrows=2, width=8.0, height=3.2, sharex=True)
        for ax, values, ylabel in (
            (ax_loss, loss, f"minibatch loss ({t['loss']})"),
            (ax_norm, norm, "gradient norm ‖∇L‖₂"),
        ):
            for k, seed in enumerate(seeds):
                color = COLORS[k % len(COLORS)]
                ax.plot(its, values[k], color=color, lw=0.5, alpha=0.45, label=f"seed {seed}")
            smooth = np.exp(
                np.nanmean(np.log(_moving_median(np.clip(values, 1e-300, None), window)), 0)
            )
            label = f"geometric mean of n={len(seeds)} seeds, running median of {window}"
            ax.plot(its, smooth, color="black", lw=1.4, label=label)
            ax.set_yscale("log")
            ax.set_ylabel(ylabel)
        ax_norm.set_xlabel("iteration")
        ax_loss.set_title(
            f"{t['title']}: MLP {'-'.join(map(str, t['spec']['widths']))} ({t['params']} params), "
            f"batch {t['batch_size']}, n={len(seeds)} seeds",
            fontsize=10,
        )
        ax_loss.legend(fontsize=7, loc="upper right", ncol=2)
        fig.tight_layout()
        figs[f"grad-loss-{t['task']}"] = fig
    return figs


def _task_stats(results: dict, task: dict) -> dict:
    """Headline numbers of one task: means over seeds, and the range over seeds of two."""
    its, loss, norm = _runs(results, task["task"])
    tail = max(1, len(its) // 10)
    peak_at = np.nanargmax(norm, axis=1)  # (n_seeds,)
    # fraction of iterations whose loss exceeds the previous one (undefined for one iteration)
    went_up = (np.diff(loss, axis=1) > 0).mean(1) if len(its) > 1 else np.full(len(loss), np.nan)
    # rank correlation over iterations, per seed (NaN for < 3 iterations)
    corr = np.array([spearman(g, lo)[0] for g, lo in zip(norm, loss, strict=True)])
    finite = corr[np.isfinite(corr)]
    return {
        "iterations": len(its),
        "tail": tail,
        "norm_start": float(np.mean(norm[:, 0])),
        "norm_peak": float(np.mean(norm[np.arange(len(norm)), peak_at])),
        "peak_iteration": float(np.median(its[peak_at])),
        "norm_end": float(np.mean(np.median(norm[:, -tail:], axis=1))),
        "loss_start": float(np.mean(loss[:, 0])),
        "loss_end": float(np.mean(np.median(loss[:, -tail:], axis=1))),
        "fraction_up": float(np.mean(went_up)),
        "fraction_up_range": (float(np.min(went_up)), float(np.max(went_up))),
        "corr": float(finite.mean()) if finite.size else float("nan"),
        "corr_range": (
            (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
        ),
    }


def notes(results: dict) -> Notes:
    summary, lines = {}, []
    n = len(results["seeds"])
    for t in results["tasks"]:
        s = _task_stats(results, t)
        key = f"{t['task']} ({t['name']})"
        summary[f"{key}: grad norm at start / peak / end"] = [
            s["norm_start"],
            s["norm_peak"],
            s["norm_end"],
        ]
        summary[f"{key}: fraction of iterations with a loss increase"] = s["fraction_up"]
        summary[f"{key}: Spearman r(grad norm, loss)"] = s["corr"]
        name = f"{t['title']} (MLP, {t['params']} params, batch {t['batch_size']})"
        lines.append(
            f"{name}: over {s['iterations']} iterations and {n} seeds, the gradient norm starts "
            f"at {sci(s['norm_start'])}, peaks at {sci(s['norm_peak'])} (median iteration "
            f"{s['peak_iteration']:.0f}) and ends at {sci(s['norm_end'])} (median of the last "
            f"{s['tail']} iterations), {s['norm_end'] / s['norm_start']:.2g}x its start; "
            f"the loss goes from {sci(s['loss_start'])} to {sci(s['loss_end'])}."
        )
        lo, hi = s["fraction_up_range"]
        lines.append(
            f"{name}: the minibatch loss went up in {s['fraction_up']:.0%} of iterations "
            f"(seeds {lo:.0%}-{hi:.0%}); the rank correlation of gradient norm and loss over "
            f"iterations is r = {s['corr']:.2f} (seeds {s['corr_range'][0]:.2f} to "
            f"{s['corr_range'][1]:.2f})."
        )
        if t["diverged_seeds"]:
            lines.append(f"{name}: seeds {t['diverged_seeds']} diverged and were frozen.")
    return Notes(summary, lines, [("Tasks", [_task_record(t) for t in results["tasks"]])])


def _task_record(t: dict) -> dict:
    """What the report shows of one task: its data, model and length in iterations."""
    return {
        "task": t["task"],
        "data": f"{t['title']}, {t['n_train']} training examples",
        "model": f"{describe_model(t['spec'])}, {t['params']} params, {t['loss']} loss",
        "batch size": t["batch_size"],
        "iterations": f"{t['epochs']} epochs x {t['steps_per_epoch']}",
    }


EXPERIMENT = Experiment(
    id="gradient-norm",
    item="HW1-2",
    part="hw1-2",
    rank=2,
    title="Gradient norm during training",
    question="How do the gradient norm and the loss evolve, iteration by iteration, while a "
    "network is trained on a simulated function and on a classification task?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        f"grad-loss-{task}": f"{task} task: minibatch loss (top) and gradient 2-norm over all "
        "parameters (bottom) at every iteration, log scales; thin: each seed, black: "
        "geometric mean over seeds of a running median"
        for task in TASKS
    },
    quick_minutes=0.1,
    full_differs="300 epochs on the function and 20 on mnist1d with 3 seeds; the full "
    "profile trains 1000 epochs on the function and 10 on MNIST with 5 seeds.",
)

"""HW1-2 gradient norm during training: the gradient norm and the loss at every iteration.

Protocol: two tasks, each trained as a population of seeds with per-step recording. At
every iteration the trainer logs the minibatch loss and the 2-norm of its gradient over
all parameters, both at the parameters before that iteration's update. Task 1 fits a
1-D function with a small MLP; task 2 classifies a dataset (mnist1d) with an MLP.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
    fidelity_row,
    finite,
    mlp_population,
    n_train_of,
    new_figure,
    parse_widths,
    require,
    sci,
    series,
    spearman,
)
from dlprobe.experiments.kit.plotting import log_scale_if_positive
from dlprobe.experiments.kit.stats import diverged_lines, pearson
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
        ("function", cfg.function, FUNCTIONS[cfg.function].formula, regression,
         parse_widths(cfg.function_model), cfg.function_train),
        ("classification", cfg.dataset, DATASETS[cfg.dataset].description.split(":")[0],
         classification, classifier, cfg.dataset_train),  # title e.g. "mnist1d"
    ]  # fmt: skip
    tasks, runs, steps = [], [], []
    for task, name, title, data, widths, train in setups:
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
        hist = ctx.train(task, pop, data, train)
        tasks.append({
            "task": task, "name": name, "title": title,
            "spec": {"kind": "mlp", "widths": widths, "activation": cfg.activation},
            "params": mlp_param_count(widths, cfg.activation),
            "loss": "MSE" if data.task == "regression" else "cross-entropy",
            "n_train": data.n_train, "batch_size": train.batch_size_for(data.n_train),
            "epochs": train.epochs, "steps_per_epoch": train.steps_per_epoch(data.n_train),
        })  # fmt: skip
        runs += [{"task": task, **r} for r in hist.final_records()]
        steps += [
            {"task": task, "seed": pop.seeds[r["model"]], "iteration": r["step"] + 1,
             "loss": r["loss"], "grad_norm": r["grad_norm"]}
            for r in hist.step_records()
        ]  # fmt: skip
    return {"tasks": tasks, "runs": runs, "steps": steps, "seeds": pop.seeds}


def _runs(results: dict, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """iterations (T,), losses (n_seeds, T), grad norms (n_seeds, T) of one task, in seed
    order, and which seeds trained without diverging (n_seeds,) bool."""
    rows = [r for r in results["steps"] if r["task"] == task]
    its, loss = series(rows, "iteration", "loss")
    _, norm = series(rows, "iteration", "grad_norm")
    lost = {r["seed"] for r in results["runs"] if r["task"] == task and r["diverged"]}
    fine = np.array([s not in lost for s in results["seeds"]], dtype=bool)
    return np.array(its), loss, norm, fine


def _moving_median(v: np.ndarray, window: int) -> np.ndarray:
    """Centred running median along the last axis (shrinking window at the ends)."""
    half = window // 2
    pad = [(0, 0)] * (v.ndim - 1) + [(half, half)]  # NaN beyond the ends: nanmedian skips it
    padded = np.pad(np.asarray(v, dtype=float), pad, constant_values=np.nan)
    return np.nanmedian(sliding_window_view(padded, 2 * half + 1, axis=-1), axis=-1)


def figures(results: dict) -> dict:
    figs = {}
    seeds = results["seeds"]
    for t in results["tasks"]:
        its, loss, norm, fine = _runs(results, t["task"])
        window = max(1, min(t["steps_per_epoch"], len(its) // 20))
        fig, (ax_loss, ax_norm) = new_figure(nrows=2, width=8.0, height=3.2, sharex=True)
        for ax, values, ylabel in (
            (ax_loss, loss, f"minibatch loss ({t['loss']})"),
            (ax_norm, norm, "gradient norm ‖∇L‖₂"),
        ):
            for k, seed in enumerate(seeds):  # a diverged run: grey, dashed, up to its end
                style = {"color": COLORS[k % len(COLORS)], "lw": 0.5, "alpha": 0.45}
                if not fine[k]:  # (a marker: its finite part may be a single point)
                    style = {"color": "gray", "ls": "--", "lw": 0.8, "marker": ".", "ms": 3}
                label = f"seed {seed}" + ("" if fine[k] else " (diverged)")
                ax.plot(its, values[k], label=label, **style)
            if fine.any():
                with np.errstate(all="ignore"):
                    runs = _moving_median(np.clip(values[fine], 1e-300, None), window)
                label = f"geometric mean of n={fine.sum()} seeds, running median of {window}"
                ax.plot(its, np.exp(np.nanmean(np.log(runs), 0)), color="black", lw=1.4,
                        label=label)  # fmt: skip
            else:
                ax.text(0.5, 0.5, f"every one of the {len(seeds)} runs diverged: no mean",
                        ha="center", transform=ax.transAxes)  # fmt: skip
            log_scale_if_positive(ax, values)
            ax.set_ylabel(ylabel)
        ax_norm.set_xlabel("iteration")
        lost = f", {len(seeds) - fine.sum()} diverged" if not fine.all() else ""
        ax_loss.set_title(
            f"{t['title']}: MLP {'-'.join(map(str, t['spec']['widths']))} ({t['params']} params), "
            f"batch {t['batch_size']}, n={fine.sum()} seeds{lost}",
            fontsize=10,
        )
        ax_loss.legend(fontsize=7, loc="upper right", ncol=2)
        fig.tight_layout()
        figs[f"grad-loss-{t['task']}"] = fig
    return figs


def _rank(a: np.ndarray, b: np.ndarray, corr=spearman) -> np.ndarray:
    """Correlation of a and b (n_seeds, T) per seed, over iterations (NaN below 3 pairs)."""
    return np.array([corr(x, y)[0] for x, y in zip(a, b, strict=True)])


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, min and max of the finite values (NaN when there are none)."""
    v = finite(values)
    return (float(v.mean()), float(v.min()), float(v.max())) if v.size else (np.nan,) * 3


def _task_stats(results: dict, task: dict) -> dict:
    """Headline numbers of one task over its seeds that did not diverge (NaN: none did)."""
    its, loss, norm, fine = _runs(results, task["task"])
    loss, norm = loss[fine], norm[fine]  # (n_fine, T)
    tail, peak_at = max(1, len(its) // 10), np.nanargmax(norm, axis=1)  # (n_fine,)
    time = np.broadcast_to(its, loss.shape)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # means of nothing when all diverged
        # fraction of iterations whose loss exceeds the previous one (NaN for one iteration)
        went_up = (np.diff(loss, axis=1) > 0).mean(1) if len(its) > 1 else np.nan * loss[:, 0]
        changes = [np.diff(np.log(v), axis=1) for v in (norm, loss)]  # iteration to iteration
        return {
            "n": int(fine.sum()),
            "iterations": len(its),
            "tail": tail,
            "norm_start": float(np.mean(norm[:, 0])),
            "norm_peak": float(np.mean(norm[np.arange(len(norm)), peak_at])),
            "peak_iteration": float(np.median(its[peak_at])),
            "norm_end": float(np.mean(np.median(norm[:, -tail:], axis=1))),
            "loss_start": float(np.mean(loss[:, 0])),
            "loss_end": float(np.mean(np.median(loss[:, -tail:], axis=1))),
            "fraction_up": _spread(went_up),
            "corr": _spread(_rank(norm, loss)),  # confounded by training time: both trend
            "trend_loss": _spread(_rank(time, loss))[0],
            "trend_norm": _spread(_rank(time, norm))[0],
            "corr_changes": _spread(_rank(*changes, corr=pearson)),  # no shared trend left
        }


def _seeds(lo: float, hi: float, n: int, fmt: str = ".2f") -> str:
    """' (seeds LO to HI)' when there are several seeds to span, else nothing."""
    return f" (seeds {lo:{fmt}} to {hi:{fmt}})" if n > 1 else ""


def _correlation_line(name: str, s: dict, task: dict) -> str:
    (r, lo, hi), (c, c_lo, c_hi) = s["corr"], s["corr_changes"]
    tl, tn = s["trend_loss"], s["trend_norm"]
    shared = min(abs(tl), abs(tn)) >= 0.3 and np.sign(tl) == np.sign(tn)
    trend = (
        f", but both {'fall' if tl < 0 else 'rise'} with training time (r with the iteration "
        f"{tl:.2f} and {tn:.2f}), a shared trend that alone makes them correlate"
        if shared
        else f"; they share no strong trend in time (r with the iteration {tl:.2f} and {tn:.2f})"
    )
    same_batch = (
        "; loss and gradient come from the same minibatch, so a harder minibatch raises both"
        if task["batch_size"] < task["n_train"]
        else ""
    )
    return (
        f"{name}: over iterations the gradient norm and the loss have rank correlation "
        f"r = {r:.2f}{_seeds(lo, hi, s['n'])}{trend}; their log changes from one iteration to "
        f"the next correlate at Pearson r = {c:.2f}{_seeds(c_lo, c_hi, s['n'])}{same_batch}."
    )


def notes(results: dict) -> Notes:
    summary, lines, rows = {}, [], []
    for t in results["tasks"]:
        s, key = _task_stats(results, t), f"{t['task']} ({t['name']})"
        summary[f"{key}: grad norm at start / peak / end"] = [
            s["norm_start"], s["norm_peak"], s["norm_end"]]  # fmt: skip
        summary[f"{key}: fraction of iterations with a loss increase"] = s["fraction_up"][0]
        summary[f"{key}: Spearman r(grad norm, loss)"] = s["corr"][0]
        summary[f"{key}: Pearson r of their log changes per iteration"] = s["corr_changes"][0]
        name = f"{t['title']} (MLP, {t['params']} params, batch {t['batch_size']})"
        every = f"{s['iterations']} iterations x {s['n']} seeds"
        rows.append(fidelity_row(
            f"gradient norm and loss at every iteration, in one figure: {t['task']} task",
            "a simulated function and a classification task", f"{every} ({t['name']})",
            s["n"] > 0, "every run diverged"))  # fmt: skip
        if s["n"] == 0:
            lines.append(f"{name}: every one of its runs diverged; no statistics.")
            continue
        lines.append(
            f"{name}: over {s['iterations']} iterations and {s['n']} seed(s), the gradient norm "
            f"starts at {sci(s['norm_start'])}, peaks at {sci(s['norm_peak'])} (median "
            f"iteration {s['peak_iteration']:.0f}) and ends at {sci(s['norm_end'])} (median of "
            f"the last {s['tail']} iterations), {s['norm_end'] / s['norm_start']:.2g}x its "
            f"start; the loss goes from {sci(s['loss_start'])} to {sci(s['loss_end'])}."
        )
        up, lo, hi = s["fraction_up"]
        cause = (
            "part of these rises are a change of minibatch, not of the weights"
            if t["batch_size"] < t["n_train"]
            else "on the full batch each rise is a step that overshot"
        )
        lines.append(
            f"{name}: the loss of the iteration's batch went up in {up:.0%} of iterations"
            f"{_seeds(lo, hi, s['n'], '.0%')}; {cause}."
        )
        lines.append(_correlation_line(name, s, t))
    lines += diverged_lines(
        results["runs"], "are left out of the statistics and drawn grey", keys=("task",)
    )
    tables = [("Tasks", [_task_record(t) for t in results["tasks"]])]
    return Notes(summary, lines, tables, rows)


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
    quick_minutes=0.2,
    full_differs="300 epochs on the function and 20 on mnist1d with 3 seeds; the full "
    "profile trains 1000 epochs on the function and 10 on MNIST with 5 seeds.",
)

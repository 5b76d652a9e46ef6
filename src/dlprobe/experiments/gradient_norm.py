"""HW1-2 gradient norm during training: the gradient norm and the loss at every iteration.

Protocol: two tasks, each trained as a population of seeds with per-step recording. At
every iteration the trainer logs the minibatch loss and the 2-norm of its gradient over
all parameters, both at the parameters before that iteration's update. Task 1 fits a
1-D function with a small MLP; task 2 classifies a dataset (mnist1d) with an MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from dlprobe.data import DATASETS, FUNCTIONS, function_dataset, load_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import (
    check_common,
    group_rows,
    model_seeds,
    parse_widths,
    require,
    sci,
)
from dlprobe.experiments.plotting import COLORS, new_figure
from dlprobe.models import build_model, describe_model, mlp_param_count
from dlprobe.train import Population, TrainConfig

TASKS = ("function", "classification")


@dataclass(frozen=True)
class Config:
    function: str = "sinc"  # target of the regression task (dlprobe function name)
    function_model: str = "1-20-20-1"  # layer widths of the regression MLP
    n_points: int = 256  # regression training points, evenly spaced on the domain
    function_epochs: int = 300  # passes over the regression points
    function_batch_size: int = 32  # regression examples per iteration; 0 = full batch
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[int, ...] = (64, 64)  # hidden-layer widths of the classification MLP
    dataset_epochs: int = 20  # passes over the classification training set
    dataset_batch_size: int = 100  # classification examples per iteration; 0 = full batch
    activation: str = "relu"  # hidden activation of both MLPs
    seeds: int = 3  # training runs per task, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer of both tasks
    lr: float = 1e-3  # learning rate of both tasks

    def validate(self) -> None:
        check_common(self)
        require(
            self.function in FUNCTIONS,
            f"unknown function {self.function!r}; valid names: {', '.join(FUNCTIONS)}",
        )
        widths = parse_widths(self.function_model)
        require(
            widths[0] == 1 and widths[-1] == 1,
            f"function_model must map 1 input to 1 output, got {self.function_model!r}",
        )
        require(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        require(
            0 <= self.function_batch_size <= self.n_points,
            f"function_batch_size must be in [0, n_points={self.n_points}], "
            f"got {self.function_batch_size}",
        )
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(
            len(self.hidden) >= 1 and min(self.hidden) >= 1,
            f"hidden must list >= 1 positive width, got {self.hidden}",
        )
        for name in ("function_epochs", "dataset_epochs"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(
            self.dataset_batch_size >= 0,
            f"dataset_batch_size must be >= 0, got {self.dataset_batch_size}",
        )


PROFILES = {
    "smoke": Config(
        function_model="1-8-8-1",
        n_points=64,
        function_epochs=5,
        function_batch_size=16,
        hidden=(16,),
        dataset_epochs=1,
        dataset_batch_size=500,
        seeds=2,
    ),
    "quick": Config(),
    "full": Config(dataset="mnist", function_epochs=1000, dataset_epochs=10, seeds=5),
}


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    seeds = model_seeds(cfg.seed, cfg.seeds)
    regression = function_dataset(cfg.function, cfg.n_points).to(run_dir.device)
    classification = load_dataset(cfg.dataset, device=run_dir.device)
    setups = [
        (
            "function",
            cfg.function,
            FUNCTIONS[cfg.function].formula,
            regression,
            parse_widths(cfg.function_model),
            cfg.function_epochs,
            cfg.function_batch_size,
        ),
        (
            "classification",
            cfg.dataset,
            DATASETS[cfg.dataset].description.split(":")[0],
            classification,
            [classification.input_dim, *cfg.hidden, classification.num_classes],
            cfg.dataset_epochs,
            cfg.dataset_batch_size,
        ),
    ]
    tasks, steps = [], []
    for task, name, title, data, widths, epochs, batch_size in setups:
        spec = {"kind": "mlp", "widths": widths, "activation": cfg.activation}
        # evaluation only at the end: the per-iteration records are what this is about
        train_cfg = TrainConfig(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            epochs=epochs,
            batch_size=batch_size,
            eval_every_epochs=epochs,
            record_steps=True,
        )
        pop = Population(lambda spec=spec: build_model(spec), seeds, run_dir.device)
        hist = run_dir.train(task, pop, data, train_cfg)
        tasks.append(
            {
                "task": task,
                "name": name,
                "title": title,
                "spec": spec,
                "params": mlp_param_count(widths, cfg.activation),
                "loss": "MSE" if data.task == "regression" else "cross-entropy",
                "n_train": data.n_train,
                "batch_size": train_cfg.batch_size_for(data.n_train),
                "epochs": epochs,
                "steps_per_epoch": train_cfg.steps_per_epoch(data.n_train),
                "diverged_seeds": [seeds[k] for k in hist.diverged],
            }
        )
        for row in hist.step_records():
            steps.append(
                {
                    "task": task,
                    "seed": seeds[row["model"]],
                    "iteration": row["step"] + 1,
                    "loss": row["loss"],
                    "grad_norm": row["grad_norm"],
                }
            )
    return {"tasks": tasks, "steps": steps, "seeds": seeds}


def _runs(results: dict, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """iterations (T,), losses (n_seeds, T), grad norms (n_seeds, T) of one task."""
    by_seed = group_rows([r for r in results["steps"] if r["task"] == task], "seed")
    first = sorted(next(iter(by_seed.values())), key=lambda r: r["iteration"])
    its = np.array([r["iteration"] for r in first])
    rows = [sorted(rs, key=lambda r: r["iteration"]) for rs in by_seed.values()]
    loss = np.array([[r["loss"] for r in rs] for rs in rows], dtype=float)
    norm = np.array([[r["grad_norm"] for r in rs] for rs in rows], dtype=float)
    return its, loss, norm


def _moving_median(v: np.ndarray, window: int) -> np.ndarray:
    """Centred running median along the last axis (shrinking window at the ends)."""
    half = window // 2
    t = v.shape[-1]
    return np.stack(
        [np.nanmedian(v[..., max(0, i - half) : i + half + 1], axis=-1) for i in range(t)],
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
                ax.plot(
                    its,
                    values[k],
                    color=COLORS[k % len(COLORS)],
                    lw=0.5,
                    alpha=0.45,
                    label=f"seed {seed}",
                )
            smooth = np.exp(
                np.nanmean(np.log(_moving_median(np.clip(values, 1e-300, None), window)), 0)
            )
            ax.plot(
                its,
                smooth,
                color="black",
                lw=1.4,
                label=f"geometric mean of n={len(seeds)} seeds, running median of {window}",
            )
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
    # rank correlation over iterations, per seed (undefined for < 3 iterations)
    corr = np.array(
        [
            spearmanr(g, lo).statistic if len(its) > 2 else np.nan
            for g, lo in zip(norm, loss, strict=True)
        ],
        dtype=float,
    )
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


def summarize(results: dict) -> dict:
    out = {}
    for t in results["tasks"]:
        s = _task_stats(results, t)
        key = f"{t['task']} ({t['name']})"
        out[f"{key}: grad norm at start / peak / end"] = [
            s["norm_start"],
            s["norm_peak"],
            s["norm_end"],
        ]
        out[f"{key}: fraction of iterations with a loss increase"] = s["fraction_up"]
        out[f"{key}: Spearman r(grad norm, loss)"] = s["corr"]
    return out


def observations(results: dict) -> list[str]:
    lines = []
    n = len(results["seeds"])
    for t in results["tasks"]:
        s = _task_stats(results, t)
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
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    rows = []
    for t in results["tasks"]:
        rows.append(
            (
                f"{t['task']} task",
                f"{t['title']}, {t['n_train']} training examples; {describe_model(t['spec'])} "
                f"({t['params']} params), {t['loss']} loss; batch {t['batch_size']}, "
                f"{t['epochs']} epochs x {t['steps_per_epoch']} iterations",
            )
        )
    rows += [
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g} (both tasks)"),
        (
            "recorded",
            "minibatch loss and its gradient 2-norm over all parameters, every iteration, before the update",
        ),
        (
            "seeds",
            f"{cfg.seeds} per task (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}), "
            "trained as one population",
        ),
    ]
    return rows


EXPERIMENT = Experiment(
    id="gradient-norm",
    homework="HW1-2",
    title="Gradient norm during training",
    question="How do the gradient norm and the loss evolve, iteration by iteration, while a "
    "network is trained on a simulated function and on a classification task?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
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

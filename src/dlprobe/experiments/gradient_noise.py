"""Neelakantan et al. 2015: annealed Gaussian gradient noise on a deep narrow network.

Protocol: a deep narrow MLP (20 hidden layers of 10 ReLU units, PyTorch's default init, which
shrinks the signal layer by layer) is trained on a small classification task by plain SGD,
with and without gradient noise N(0, σ_t²), σ_t² = η / (1 + t)^γ added before every step
(the paper's η ∈ {0.01, 0.3, 1}, γ = 0.55; η = 0 is plain training). Held equal across arms:
the seeds (so the initial weights and the minibatch order), optimizer, learning rate, batch
size and epoch cap. A run succeeds when its training accuracy reaches the target (it stops
there); the others are named by how they ended: diverged, collapsed (one predicted class for
every training input) or not converged. Each arm is one population of seeds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from scipy.stats import fisher_exact

from dlprobe.config import NonNegFloat, PosInt, Seed, one_of, require
from dlprobe.experiments.kit import Activation, DatasetName, RunContext
from dlprobe.experiments.kit.experiment import Experiment, Notes, fidelity_row
from dlprobe.experiments.kit.plotting import COLORS, mean_band, new_figure
from dlprobe.experiments.kit.stats import diverged_lines, group_rows, series
from dlprobe.experiments.kit.sweep import check_classifier_fits, data_record
from dlprobe.models import INITS, MLP, mlp_param_count
from dlprobe.train import Population, TrainConfig
from dlprobe.train.noise import noise_std

OUTCOMES = ("reached", "not converged", "collapsed", "diverged")  # how a run ended


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    depth: PosInt = 20  # hidden layers
    width: PosInt = 10  # units per hidden layer
    activation: Activation = "relu"  # hidden activation
    # weight initialisation; PyTorch's default (uniform ±1/√fan_in) shrinks the signal by
    # about √3 per ReLU layer: the poor start the paper's noise helps from
    init: one_of(INITS, "init") = "default"
    etas: tuple[NonNegFloat, ...] = (0.0, 0.01, 0.3, 1.0)  # noise scales η; 0 = no noise
    seeds: PosInt = 8  # runs per η, one population; the same seeds for every η
    seed: Seed = 0  # base seed: run i uses seed + i (initial weights and minibatch order)
    # training of every arm; stop_at_train_accuracy is the success target; grad_noise_gamma
    # is γ of every arm (grad_noise_eta is set per arm from etas)
    train: TrainConfig = TrainConfig(
        optimizer="sgd",
        lr=0.05,
        epochs=30,
        batch_size=64,
        stop_at_train_accuracy=0.9,
        grad_noise_gamma=0.55,
    )

    def check(self) -> None:
        require(0.0 in self.etas, "etas must include 0 (plain training, the baseline)")
        require(len(set(self.etas)) == len(self.etas) >= 2, "etas must be >= 2 distinct values")
        require(self.train.stop_at_train_accuracy > 0, "train.stop_at_train_accuracy is the "
                "success target: it must be > 0")  # fmt: skip
        require(self.train.grad_noise_eta == 0, "set the noise scales with etas, not train")
        check_classifier_fits(self.dataset, [self.width] * self.depth, self.activation, self.seeds)


PROFILES = {
    "smoke": {"depth": 6, "etas": (0.0, 0.3), "seeds": 3, "train.epochs": 3},
    "full": {"seeds": 50, "train.epochs": 100},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    widths = [data.input_dim, *[cfg.width] * cfg.depth, data.output_dim]
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    runs, curves = [], []
    for eta in cfg.etas:
        pop = Population(partial(MLP, widths, cfg.activation, init=cfg.init), seeds, ctx.device)
        train = dataclasses.replace(cfg.train, grad_noise_eta=eta)
        hist = ctx.train(f"eta-{eta:g}", pop, data, train)
        with torch.no_grad():
            pop.train(False)
            classes = [len(p.unique()) for p in pop.forward(data.x_train, shared=True).argmax(-1)]
            pop.train(True)
        curves += [{"eta": eta, **r} for r in hist.epoch_records()]
        for k, r in enumerate(hist.final_records()):
            reached, stop = hist.reached_target[k], hist.stopped_at_epoch[k]
            outcome = ("diverged" if r["diverged"] else "reached" if reached
                       else "collapsed" if classes[k] == 1 else "not converged")  # fmt: skip
            runs.append({"eta": eta, **r, "outcome": outcome, "epochs_to_target": stop,
                         "initial_train_loss": hist.initial_train_loss[k],
                         "predicted_classes": classes[k], "steps": hist.steps_taken[k]})  # fmt: skip
    steps_per_epoch = cfg.train.steps_per_epoch(data.n_train)
    return {
        "setup": {
            **dataclasses.asdict(cfg),
            "params": mlp_param_count(widths, cfg.activation),
            "steps_per_epoch": steps_per_epoch,
            "data": data_record(data),
        },  # fmt: skip
        "runs": runs,
        "curves": curves,
    }


def _counts(results: dict) -> dict[float, dict[str, int]]:
    """η -> runs per outcome."""
    return {
        eta: {o: sum(r["outcome"] == o for r in rs) for o in OUTCOMES}
        for (eta,), rs in group_rows(results["runs"], "eta").items()
    }


def _outcome_figure(results: dict):
    fig, ax = new_figure(width=6.4, height=4.2)
    counts, target = _counts(results), results["setup"]["train"]["stop_at_train_accuracy"]
    x, bottom = np.arange(len(counts)), np.zeros(len(counts))
    colors = {"reached": COLORS[2], "not converged": COLORS[1], "collapsed": COLORS[7],
              "diverged": COLORS[3]}  # fmt: skip
    for o in OUTCOMES:
        height = np.array([c[o] for c in counts.values()])
        ax.bar(x, height, bottom=bottom, color=colors[o], label=o, width=0.6)
        bottom += height
    for i, c in enumerate(counts.values()):
        ax.text(i, bottom[i], f"{c['reached']}/{sum(c.values())}", ha="center", va="bottom")
    ax.set_xticks(x, [f"η = {eta:g}" + (" (none)" if eta == 0 else "") for eta in counts])
    ax.set(ylabel="runs", ylim=(0, bottom.max() * 1.15),
           title=f"How each run ended: train accuracy ≥ {target:g} reached (label: n reached)")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left", ncols=4)
    return fig


def _curves_figure(results: dict):
    fig, (acc, loss) = new_figure(ncols=2, width=5.2, height=4.0)
    dead = {(r["eta"], r["seed"]) for r in results["runs"] if r["diverged"]}
    for i, ((eta,), rows) in enumerate(group_rows(results["curves"], "eta").items()):
        rows = [r for r in rows if (eta, r["seed"]) not in dead]
        if not rows:
            continue
        for ax, key in ((acc, "train_accuracy"), (loss, "train_loss")):
            mean_band(
                ax, *series(rows, "epoch", key), f"η = {eta:g}", COLORS[i], log=key == "train_loss"
            )
    target = results["setup"]["train"]["stop_at_train_accuracy"]
    acc.axhline(target, color="grey", ls="--", lw=0.8)
    acc.set(xlabel="epoch", ylabel="training accuracy", title="mean, band min-max (dashed: target)")
    loss.set(
        xlabel="epoch", ylabel="training loss", yscale="log", title="geometric mean, band min-max"
    )
    acc.legend(fontsize=8)
    s = results["setup"]
    fig.suptitle(f"{s['depth']} x {s['width']} {s['activation']} MLP on {s['data']['name']}; a "
                 "run that reached the target stops there")  # fmt: skip
    fig.tight_layout()
    return fig


def _noise_figure(results: dict):
    """σ_t of each arm over the steps of the budget: how loud the noise is when."""
    setup = results["setup"]
    fig, ax = new_figure(width=6.0, height=3.8)
    t = np.arange(setup["train"]["epochs"] * setup["steps_per_epoch"])
    for i, eta in enumerate(e for e in setup["etas"] if e > 0):
        std = [noise_std(eta, setup["train"]["grad_noise_gamma"], s) for s in t]
        ax.plot(t + 1, std, color=COLORS[i + 1], label=f"η = {eta:g}")
    ax.set(xscale="log", yscale="log", xlabel="optimizer step t + 1",
           ylabel="noise std σ_t per gradient entry",
           title=f"σ_t² = η / (1 + t)^γ, γ = {setup['train']['grad_noise_gamma']:g}")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def figures(results: dict) -> dict:
    return {
        "outcomes": _outcome_figure(results),
        "curves": _curves_figure(results),
        "noise": _noise_figure(results),
    }


def notes(results: dict) -> Notes:
    setup, counts = results["setup"], _counts(results)
    tr, n = setup["train"], setup["seeds"]
    base = counts[0.0]["reached"]
    lines = [
        f"Held equal: {setup['depth']} hidden layers of {setup['width']} {setup['activation']} "
        f"units ({setup['params']} parameters, {setup['init']} init), the same {n} seeds "
        f"(initial weights and minibatch order) in every arm, {tr['optimizer']} at lr "
        f"{tr['lr']:g}, batch {tr['batch_size']}, at most {tr['epochs']} epochs; success = "
        f"training accuracy ≥ {tr['stop_at_train_accuracy']:g}."
    ]
    summary, rows, best = {}, [], (0.0, base, 1.0)
    for eta, c in counts.items():
        done = [
            r["epochs_to_target"]
            for r in results["runs"]
            if r["eta"] == eta and r["outcome"] == "reached"
        ]
        p = (
            1.0
            if eta == 0
            else fisher_exact([[c["reached"], n - c["reached"]], [base, n - base]])[1]
        )
        summary[f"η = {eta:g}: runs reaching the target"] = f"{c['reached']}/{n}"
        others = ", ".join(f"{c[o]} {o}" for o in OUTCOMES[1:] if c[o])
        lines.append(
            f"η = {eta:g}: {c['reached']} of {n} runs reached the target"
            + (
                f" (median epoch {np.median(done):g}, range {min(done)}-{max(done)})"
                if done
                else ""
            )
            + (f"; {others}" if others else "")
            + ("" if eta == 0 else f"; vs no noise {base}/{n}, Fisher exact p = {p:.3g}")
            + "."
        )
        if eta > 0 and c["reached"] > best[1]:
            best = (eta, c["reached"], p)
        rows.append({"η": eta, **{o: c[o] for o in OUTCOMES}, "Fisher p vs η = 0": p})
    eta, top, p = best
    fidelity = fidelity_row(
        "annealed gradient noise lets a deep narrow net from a poor init train",
        "Neelakantan et al. 2015: a 20-layer fully connected net trains from a poor "
        "initialization with noise (η ∈ {0.01, 0.3, 1}, γ = 0.55), not without",
        "; ".join(f"η = {e:g}: {c['reached']}/{n}" for e, c in counts.items()),
        top > base and p < 0.05,
        f"no noise arm beat no noise ({base}/{n}) with p < 0.05"
        + (f"; best η = {eta:g}: {top}/{n}, p = {p:.3g}" if top > base else ""),
    )
    lines += diverged_lines(results["runs"], "count as not reaching the target", keys=("eta",))
    return Notes(summary, lines, [("Outcomes per noise scale", rows)], [fidelity])


EXPERIMENT = Experiment(
    id="gradient-noise",
    item="Neelakantan et al. 2015 (HW1 presentation)",
    part="escape",
    rank=2,
    title="Annealed gradient noise on a deep narrow network",
    question="Does adding annealed Gaussian noise to the gradients let a deep narrow network "
    "train from a poor initialization where plain training fails?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "outcomes": "runs per noise scale η by how they ended (stacked); the label is the "
        "number that reached the target training accuracy",
        "curves": "training accuracy and loss per epoch for each η over the runs that did not "
        "diverge; a run that reached the target was stopped and stays flat",
        "noise": "the noise's standard deviation per gradient entry along the step budget",
    },
    quick_minutes=0.9,  # 51.1 s wall on the idle 2-core CPU, start-up included
    full_differs="the paper trained 20 x 50 ReLU nets on MNIST; quick and full use 20 x 10 "
    "on digits, full with 50 seeds and up to 100 epochs",
)

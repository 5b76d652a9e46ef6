"""Small vs large batches under equal epochs, and momentum (lecture L5).

Protocol: one MLP population (same seeds) per batch size trains by plain SGD for the same
epochs at the same lr: a small batch takes more, noisier steps. Per batch size: wall seconds
per epoch here, train/test accuracy and loss, steps. Update noise E|g_B - g|^2 over random
minibatches of B distinct examples, at the initial weights and at the end of SGD at
train.batch_size; theory sigma^2/B (N-B)/(N-1). Momentum: SGD vs momentum, same seeds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    DatasetName,
    Experiment,
    Fraction,
    NonNegInt,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_batch_sizes,
    check_classifier_fits,
    data_record,
    fidelity_row,
    group_rows,
    mean_band,
    mlp_population,
    n_train_of,
    new_figure,
    no_data,
    require,
    series,
)
from dlprobe.experiments.kit.plotting import batch_axis
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.train import TrainConfig


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden widths of the MLP
    activation: Activation = "relu"  # hidden activation
    batch_sizes: tuple[NonNegInt, ...] = (16, 64, 256, 0)  # batch sizes compared (0: full batch)
    seeds: PosInt = 5  # models per batch size, one population; the same seeds everywhere
    seed: Seed = 0  # base seed: model i uses seed + i (initial weights, minibatch order)
    noise_batches: PosInt = 50  # random minibatches per update-noise estimate
    momentum: Fraction = 0.9  # momentum of the momentum arm (the other arm: plain SGD)
    # training of every run: plain SGD, lr and epochs held equal across batch sizes;
    # batch_size is the one of the momentum comparison, eval_every_epochs its curves
    train: TrainConfig = TrainConfig(optimizer="sgd", lr=0.05, epochs=10, batch_size=128)

    def check(self) -> None:
        n_train = n_train_of(self.dataset)
        require(len(set(self.batch_sizes)) == len(self.batch_sizes) >= 2,
                "batch_sizes must be >= 2 distinct values")  # fmt: skip
        check_batch_sizes(self.batch_sizes, n_train)
        require(sum(0 < b < n_train for b in self.batch_sizes) >= 2, "give at least two batch "
                "sizes below the training set size (the update-noise slope needs them)")  # fmt: skip
        require(self.train.optimizer == "sgd", "train.optimizer must be sgd (momentum is the "
                "other arm)")  # fmt: skip
        require(self.momentum < 1, f"momentum must be < 1, got {self.momentum}")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)


# fmt: off
PROFILES = {
    "smoke": {"batch_sizes": (128, 512, 0), "hidden": (16,), "seeds": 2, "noise_batches": 4,
              "train.epochs": 1},
    "full": {"batch_sizes": (1, 8, 32, 128, 512, 0), "seeds": 10, "train.epochs": 50},
}
# fmt: on


def gradient_noise(model, x, y, batch_size: int, n_batches: int, seed: int) -> float:
    """Mean of |g_B - g|^2 over ``n_batches`` minibatches of ``batch_size`` distinct examples
    (a seeded permutation each, as a training step draws them); g is the full-batch gradient
    of the mean cross-entropy. Returns 0 for a full batch; the model is left unchanged."""
    params = [p for p in model.parameters() if p.requires_grad]

    def grad(xb, yb) -> torch.Tensor:  # (P,)
        g = torch.autograd.grad(F.cross_entropy(model(xb), yb), params)
        return torch.cat([t.reshape(-1) for t in g])

    n = x.shape[0]
    require(0 < batch_size <= n, f"batch_size must be in [1, {n}], got {batch_size}")
    full, gen, total = grad(x, y), torch.Generator().manual_seed(seed), 0.0
    for _ in range(n_batches):
        idx = torch.randperm(n, generator=gen)[:batch_size].to(x.device)
        total += (grad(x[idx], y[idx]) - full).pow(2).sum().item()
    return total / n_batches


def _noise(pop, data, cfg: Config, diverged: list[bool]) -> list[list[float]]:
    """(K, batch sizes below N) update noise of every model; NaN for a diverged one."""
    sizes = [b for b in cfg.batch_sizes if 0 < b < data.n_train]
    out = [[math.nan] * len(sizes) for _ in range(pop.size)]
    for k in range(pop.size):
        if not diverged[k]:
            model = pop.model(k)
            out[k] = [gradient_noise(model, data.x_train, data.y_train, b, cfg.noise_batches,
                                     cfg.seed + 1000 * k + b) for b in sizes]  # fmt: skip
    return out


def _noise_rows(pop, data, cfg, phase: str, diverged: list[bool], ctx) -> list[dict]:
    sizes = [b for b in cfg.batch_sizes if 0 < b < data.n_train]
    var = ctx.stage(f"noise-{phase}", lambda _: {"v": _noise(pop, data, cfg, diverged)})["v"]
    return [{"phase": phase, "seed": s, "batch_size": b, "gradient_variance": v}
            for s, row in zip(pop.seeds, var, strict=True)
            for b, v in zip(sizes, row, strict=True)]  # fmt: skip


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    widths = [data.input_dim, *cfg.hidden, data.output_dim]
    runs, arms, curves, noise = [], [], [], []
    for b in cfg.batch_sizes:
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
        if not noise:  # the same seeds: one population's initial weights are everyone's
            noise += _noise_rows(pop, data, cfg, "initial", [False] * pop.size, ctx)
        train = dataclasses.replace(cfg.train, batch_size=b, eval_every_epochs=cfg.train.epochs)
        hist = ctx.train(f"batch-{b}", pop, data, train)
        per_epoch = hist.seconds / max(hist.epochs[-1], 1)  # the population's, K models
        runs += [{"batch_size": b, "steps": hist.steps_taken[k], "seconds_per_epoch": per_epoch,
                  **r} for k, r in enumerate(hist.final_records())]  # fmt: skip
    for arm, opt in (("SGD", "sgd"), (f"momentum {cfg.momentum:g}", "momentum")):
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
        train = dataclasses.replace(cfg.train, optimizer=opt, momentum=cfg.momentum)
        hist = ctx.train(f"arm-{opt}", pop, data, train)
        curves += [{"arm": arm, **r} for r in hist.epoch_records()]
        arms += [{"arm": arm, **r} for r in hist.final_records()]
        if opt == "sgd":  # update noise at the end of plain SGD at train.batch_size
            dead = [r["diverged"] for r in arms]
            noise += _noise_rows(pop, data, cfg, "final", dead, ctx)
    setup = {**dataclasses.asdict(cfg), "widths": widths, "data": data_record(data),
             "device": str(ctx.device), "n_train": data.n_train}  # fmt: skip
    return {"setup": setup, "runs": runs, "arms": arms, "curves": curves, "noise": noise}


def _per_batch(results: dict) -> dict[int, dict]:
    """Examples per step -> seconds per epoch, steps, n, and the runs that did not diverge."""
    out = {}
    for (b,), rs in group_rows(results["runs"], "batch_size").items():
        fine = [r for r in rs if not r["diverged"]]
        out[b or results["setup"]["n_train"]] = {"seconds": rs[0]["seconds_per_epoch"],
            "n": len(rs), "steps": max(r["steps"] for r in rs), "fine": fine}  # fmt: skip
    return out


def noise_slope(results: dict, phase: str) -> tuple[float, int] | None:
    """Least-squares slope of log(update noise (N-1)/(N-B)) against log(B), over every
    non-diverged (model, B) value of ``phase``, and how many; None if < 2 sizes. Sampling
    without replacement predicts exactly -1: E|g_B - g|^2 = sigma^2/B (N-B)/(N-1)."""
    n = results["setup"]["n_train"]
    pts = [(r["batch_size"], r["gradient_variance"] * (n - 1) / (n - r["batch_size"]))
           for r in results["noise"]
           if r["phase"] == phase and r["gradient_variance"] is not None
           and math.isfinite(r["gradient_variance"]) and r["gradient_variance"] > 0]  # fmt: skip
    if len({b for b, _ in pts}) < 2:
        return None
    x, y = np.log([b for b, _ in pts]), np.log([v for _, v in pts])
    return float(np.polyfit(x, y, 1)[0]), len(pts)


def _noise_figure(results: dict):
    fig, ax = new_figure(width=6.0, height=4.2)
    ref = None  # 1/B through the first phase's mean at its smallest batch
    for i, phase in enumerate(("initial", "final")):
        rows = [r for r in results["noise"] if r["phase"] == phase]
        xs, runs = series(rows, "batch_size", "gradient_variance") if rows else ([], [])
        fit = noise_slope(results, phase)
        label = f"{phase} weights" + (f", slope {fit[0]:.2f} ((N-B)/(N-1) out)" if fit else "")
        if rows and mean_band(ax, xs, runs, label, COLORS[i], log=True, marker="o") and not ref:
            ref = np.array(xs, dtype=float), np.nanmean(runs[:, 0]) * xs[0]
    if ref is None:
        no_data(ax, "no finite update noise: every probed model diverged")
        return fig
    ax.plot(ref[0], ref[1] / ref[0], color="grey", ls="--", lw=0.8, label="∝ 1/B")
    batch_axis(ax, [int(b) for b in ref[0]], results["setup"]["n_train"])
    ax.set(yscale="log", xlabel="batch size B",
           ylabel="E|g_B - g|² (update noise)", title="Minibatch gradient variance around "
           f"the full-batch gradient ({results['setup']['noise_batches']} batches each)")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def _batch_figure(results: dict):
    fig, (time, acc) = new_figure(ncols=2, width=5.0, height=4.0)
    per, n_train = _per_batch(results), results["setup"]["n_train"]
    sizes = sorted(per)
    time.plot(sizes, [per[b]["seconds"] for b in sizes], "o-", color=COLORS[0])
    for b in sizes:
        steps = math.ceil(n_train / b)
        time.annotate(f"{steps} step{'s' * (steps > 1)}/epoch", (b, per[b]["seconds"]), fontsize=7)
    time.set(yscale="log", ylabel="wall seconds per epoch (whole population)",
             title=f"Time per epoch on {results['setup']['device']}")  # fmt: skip
    for i, key in enumerate(("train_accuracy", "test_accuracy")):
        for b in sizes:
            ys = [r[key] for r in per[b]["fine"]]
            acc.scatter([b * (1.06 if i else 0.94)] * len(ys), ys, s=12, color=COLORS[i])
        means = [np.mean([r[key] for r in per[b]["fine"]]) if per[b]["fine"] else np.nan
                 for b in sizes]  # fmt: skip
        ns = {len(per[b]["fine"]) for b in sizes}  # runs per batch size: one n, or the fewest
        n = f"n={ns.pop()}" if len(ns) == 1 else f"n≥{min(ns)}"
        acc.plot(sizes, means, color=COLORS[i], label=f"{key.replace('_', ' ')} (mean, {n} each)")
    drawn = any(per[b]["fine"] for b in sizes)
    if not drawn:
        no_data(acc, "every run diverged")
    else:
        acc.set(ylabel="accuracy after the last epoch", title="Dots: runs that did not diverge")
        acc.legend(fontsize=8)
    for ax in (time, acc) if drawn else (time,):
        batch_axis(ax, sizes, n_train)
    fig.suptitle(f"{results['setup']['train']['epochs']} epochs of SGD at every batch size")
    fig.tight_layout()
    return fig


def _momentum_figure(results: dict):
    fig, ax = new_figure(width=6.0, height=4.0)
    dead, drawn = {(r["arm"], r["seed"]) for r in results["arms"] if r["diverged"]}, False
    for i, ((arm,), rows) in enumerate(group_rows(results["curves"], "arm").items()):
        if rows := [r for r in rows if (arm, r["seed"]) not in dead]:
            drawn |= mean_band(ax, *series(rows, "epoch", "train_loss"), arm, COLORS[i], log=True) is not None  # fmt: skip
    if not drawn:
        no_data(ax, "every run diverged")
        return fig
    b = results["setup"]["train"]["batch_size"] or results["setup"]["n_train"]
    ax.set(yscale="log", xlabel="epoch", ylabel="training loss (cross-entropy)",
           title=f"Batch {b}: SGD vs momentum (geometric mean, band min-max)")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def figures(results: dict) -> dict:
    return {"batch-size": _batch_figure(results), "gradient-noise": _noise_figure(results),
            "momentum": _momentum_figure(results)}  # fmt: skip


def _mean(rows: list, key: str) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else math.nan


def notes(results: dict) -> Notes:
    s, per = results["setup"], _per_batch(results)
    tr, sizes = s["train"], sorted(per)
    lines = [
        f"Held equal: MLP {'-'.join(map(str, s['widths']))} ({s['activation']}), the same "
        f"{s['seeds']} seeds, plain SGD at lr {tr['lr']:g}, {tr['epochs']} epochs: a smaller "
        f"batch takes more steps. Seconds per epoch (table, fidelity row) are wall time of the "
        f"whole population on {s['device']}; the machine may be shared, so they vary by run."
    ]
    table = [{"batch size": b, "steps per model": per[b]["steps"],
              "seconds per epoch": per[b]["seconds"], "runs (not diverged)":
              f"{len(per[b]['fine'])}/{per[b]['n']}",
              **{k.replace("_", " ") + " (mean)": _mean(per[b]["fine"], k) for k in
                 ("train_loss", "train_accuracy", "test_accuracy")}} for b in sizes]  # fmt: skip
    small, large = per[sizes[0]], per[sizes[-1]]
    faster = large["seconds"] < small["seconds"]
    acc = {k: [_mean(p["fine"], k) for p in (small, large)]
           for k in ("train_accuracy", "test_accuracy")}  # fmt: skip
    gap = [a - b for a, b in zip(acc["train_accuracy"], acc["test_accuracy"], strict=True)]
    both = small["fine"] and large["fine"]
    better = bool(both) and acc["test_accuracy"][0] > acc["test_accuracy"][1] and gap[0] <= gap[1]
    lines.append(
        f"After equal epochs, batch {sizes[0]} reached train / test accuracy "
        f"{acc['train_accuracy'][0]:.3f} / {acc['test_accuracy'][0]:.3f} (n={len(small['fine'])})"
        f", batch {sizes[-1]} {acc['train_accuracy'][1]:.3f} / {acc['test_accuracy'][1]:.3f} "
        f"(n={len(large['fine'])}); train - test gap {gap[0]:.3f} vs {gap[1]:.3f}."
        if both else "No comparison of accuracy: every run of the smallest or the largest "
        "batch diverged."
    )  # fmt: skip
    fits = {p: noise_slope(results, p) for p in ("initial", "final")}
    for phase, fit in fits.items():
        if fit:
            lines.append(f"Update noise at the {phase} weights, the factor (N-B)/(N-1) of "
                         f"sampling without replacement divided out, goes as B^{fit[0]:.2f} "
                         f"(least squares on log-log, {fit[1]} values; theory: -1).")  # fmt: skip
    final = {a: _mean([r for r in rs if not r["diverged"]], "train_loss")
             for (a,), rs in group_rows(results["arms"], "arm").items()}  # fmt: skip
    (sgd, l_sgd), (mom, l_mom) = final.items()
    lines.append(f"At batch {tr['batch_size'] or s['n_train']}, after {tr['epochs']} epochs the"
                 f" mean training loss is {l_sgd:.3g} with {sgd} and {l_mom:.3g} with {mom}.")  # fmt: skip
    lines += diverged_lines(results["runs"], "are left out of the statistics", ("batch_size",))
    lines += diverged_lines(results["arms"], "are left out of the statistics", ("arm",))
    fit = fits["initial"]
    fidelity = [
        fidelity_row("smaller batches give noisier updates, variance ~ 1/B", "lecture L5 "
                     "(noisy small-batch updates); sampling theory σ²/B", f"slope "
                     f"{fit[0]:.2f} at the initial weights" if fit else "no slope",
                     bool(fit) and abs(fit[0] + 1) < 0.2, "the fitted slope is not -1 ± 0.2"),
        fidelity_row("a large batch's epoch is faster (parallel steps)", "lecture L5: with "
                     "parallel computing, an epoch of large batches takes less time",
                     f"{small['seconds']:.3g} s vs {large['seconds']:.3g} s per epoch", faster,
                     "the large-batch epoch was not faster on this machine"),
        fidelity_row("small batches generalize better (higher test accuracy, smaller gap)",
                     "lecture L5 (Keskar et al. 2017)", f"test accuracy "
                     f"{acc['test_accuracy'][0]:.3f} vs {acc['test_accuracy'][1]:.3f}, gap "
                     f"{gap[0]:.3f} vs {gap[1]:.3f} (batch {sizes[0]} vs {sizes[-1]})", better,
                     f"the large batch did not fit the training set (train accuracy "
                     f"{acc['train_accuracy'][1]:.3f} vs {acc['train_accuracy'][0]:.3f}): under "
                     "equal epochs this compares optimization, not generalization"
                     if acc["train_accuracy"][1] < acc["train_accuracy"][0] - 0.05 else
                     "not higher test accuracy with a smaller gap"),
        fidelity_row("momentum moves past flat regions faster", "lecture L5 (momentum)",
                     f"final train loss {l_mom:.3g} with momentum vs {l_sgd:.3g} without",
                     bool(l_mom < l_sgd), "momentum did not end lower"),
    ]  # fmt: skip
    return Notes({f"batch {b}: test accuracy (mean)": _mean(per[b]["fine"], "test_accuracy")
                  for b in sizes}, lines, [("Per batch size", table)], fidelity)  # fmt: skip


EXPERIMENT = Experiment(
    id="batch-size",
    item="Lecture L5",
    part="batch",
    rank=1,
    title="Small vs large batches under equal epochs, and momentum",
    question="Under equal epochs, how do small and large batches differ in time per epoch, "
    "update noise and accuracy, and does momentum speed plain SGD up?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "batch-size": "left: wall seconds per epoch (steps per epoch labelled); right: train "
        "and test accuracy of every run that did not diverge, and their means",
        "gradient-noise": "E|g_B - g|² against B at the initial and final weights (geometric "
        "mean over seeds, band min-max); dashed: 1/B",
        "momentum": "training loss per epoch with and without momentum, same seeds",
    },
    quick_minutes=0.4,  # 23 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="quick: batch 16 to full, 5 seeds, 10 epochs; full: batch 1 to full, 10 "
    "seeds, 50 epochs",
)

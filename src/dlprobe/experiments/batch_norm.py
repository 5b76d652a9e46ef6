"""Batch normalization: trainable learning rates, speed, smoothness of the loss surface.

Protocol: per activation, one MLP with and without BatchNorm (before each hidden activation)
trains with plain SGD at each lr of a grid (same seeds, batch size, epochs). Each epoch's
mean minibatch loss (training mode: what the optimizer sees) tells when a run reaches a
target; an lr is trainable when every seed reaches it. Along the run at train.lr: the top
Hessian eigenvalue (Lanczos, float64) on fixed training examples, BatchNorm in eval mode
with the training set's statistics. Claims (Ioffe & Szegedy 2015, Santurkar et al. 2018):
BN trains at larger lrs, faster, on a smoother surface; rescues a failing sigmoid net.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
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
    data_record,
    fidelity_row,
    group_rows,
    mean_band,
    n_train_of,
    new_figure,
    no_data,
    one_of,
    probe_examples,
    require,
    seeds_from,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.trajectories import check_snapshots
from dlprobe.measure import top_hessian_eigenvalues
from dlprobe.models import INITS, MLP, recompute_batch_norm_statistics
from dlprobe.train import Population, TrainConfig

VARIANTS = ("plain", "batch norm")


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: NonNegInt = 0  # training examples used (0: all), a seeded subset
    activations: tuple[Activation, ...] = ("sigmoid", "relu")  # hidden activations compared
    hidden: tuple[PosInt, ...] = (100, 100, 100)  # hidden widths (Ioffe & Szegedy's MNIST net)
    init: one_of(INITS, "init") = "default"  # weight initialisation of both variants
    seeds: PosInt = 3  # models per setting (BatchNorm ones train one by one)
    seed: Seed = 0  # base seed: model i uses seed + i; also draws the probe examples
    lr_factors: tuple[PosFloat, ...] = (1.0, 10.0, 100.0)  # grid: train.lr times these
    target_loss: PosFloat = 0.25  # training-mode loss (cross-entropy) a run must get below
    probe_examples: PosInt = 128  # training examples the Hessian is taken on
    # training (optimizer, lr, epochs, batch) at each lr of the grid; Hessian at train.lr
    train: TrainConfig = TrainConfig(
        optimizer="sgd", lr=0.3, epochs=15, batch_size=64, snapshot_every_epochs=5
    )

    def check(self) -> None:
        require(len(self.activations) * len(self.hidden) > 0, "give activations and widths")
        require(1.0 in self.lr_factors, "lr_factors must hold 1 (the probed run at train.lr)")
        n_train_of(self.dataset, self.train_subset)
        for act in self.activations:
            check_classifier_fits(self.dataset, self.hidden, act, self.seeds)
        check_snapshots(self.train)


# fmt: off
PROFILES = {
    "smoke": {"activations": ("sigmoid",), "hidden": (16,), "seeds": 2, "train_subset": 256,
              "lr_factors": (1.0, 100.0), "probe_examples": 64, "train.epochs": 2,
              "train.snapshot_every_epochs": 1},
    "full": {"dataset": "mnist", "seeds": 5, "probe_examples": 1024, "train.batch_size": 60,
             "train.epochs": 50, "lr_factors": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
             "train.snapshot_every_epochs": 10},
}
# fmt: on


def epoch_losses(hist, steps: int, epochs: int) -> np.ndarray:
    """(K, epochs) each epoch's mean minibatch loss (training mode); NaN after divergence."""
    k = len(hist.seeds)  # explicit below: a run that diverged at its first step has no rows
    steps_loss = np.array(hist.step_loss, dtype=float).reshape(-1, k)  # (S, K)
    done = steps_loss.shape[0] // steps
    out = np.full((k, epochs), np.nan)
    out[:, :done] = steps_loss[: done * steps].reshape(done, steps, k).mean(1).T
    return out


def _probe(pop: Population, hist, data, x, y) -> list[list[float]]:
    """Top Hessian eigenvalue (K, snapshots) of each model, up to its divergence (NaN)."""
    out = torch.full((pop.size, len(hist.snapshots)), math.nan, dtype=torch.float64)
    for t, (epoch, flat) in enumerate(zip(hist.snapshot_epochs, hist.snapshots, strict=True)):
        pop.load_flat_params(flat)
        for k, d in enumerate(hist.diverged_at_epoch):
            if d is None or epoch < d or epoch == 0:
                model = recompute_batch_norm_statistics(pop.model(k), data.x_train)
                out[k, t] = top_hessian_eigenvalues(model, F.cross_entropy, x, y, k=1)[0]
    return out.tolist()


def _train(cfg: Config, ctx: RunContext, data, act: str, variant: str, factor: float, x, y):
    """One (activation, variant, lr) population: run rows, curve rows, Hessian rows."""
    lr, probed = cfg.train.lr * factor, factor == 1.0
    widths = [data.input_dim, *cfg.hidden, data.output_dim]
    factory = partial(MLP, widths, act, batch_norm=variant != "plain", init=cfg.init)
    pop = Population(factory, seeds_from(cfg.seed, cfg.seeds), ctx.device)
    train = replace(cfg.train, lr=lr, record_steps=True,
                    snapshot_every_epochs=cfg.train.snapshot_every_epochs if probed else 0)  # fmt: skip
    hist = ctx.train(f"{act}-{variant.replace(' ', '-')}-x{factor:g}", pop, data, train)
    losses = epoch_losses(hist, train.steps_per_epoch(data.n_train), train.epochs)  # (K, E)
    tag = {"activation": act, "variant": variant, "lr": lr, "factor": factor}
    runs, curves, hessian = [], [], []
    for k, record in enumerate(hist.final_records()):
        below = np.flatnonzero(losses[k] < cfg.target_loss)
        reached = None if record["diverged"] or not below.size else int(below[0]) + 1
        runs.append({**tag, **record, "final_train_mode_loss": float(losses[k, -1]),
                     "epochs_to_target": reached})  # fmt: skip
        curves += [{**tag, "seed": record["seed"], "epoch": e + 1, "loss": float(v)}
                   for e, v in enumerate(losses[k])]  # fmt: skip
    if probed:
        ctx.log(f"Hessian of {act} {variant} at {len(hist.snapshot_epochs)} snapshots")
        eigs = ctx.stage(f"hessian-{act}-{variant.replace(' ', '-')}",
                         lambda _: {"eigs": _probe(pop, hist, data, x, y)})["eigs"]  # fmt: skip
        hessian = [{**tag, "seed": s, "epoch": e, "top_eigenvalue": v}
                   for s, row in zip(pop.seeds, eigs, strict=True)
                   for e, v in zip(hist.snapshot_epochs, row, strict=True)]  # fmt: skip
    return runs, curves, hessian


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    x, y = probe_examples(data, cfg.probe_examples, cfg.seed)
    runs, curves, hessian = [], [], []
    for act, variant, factor in itertools.product(cfg.activations, VARIANTS, cfg.lr_factors):
        r, c, h = _train(cfg, ctx, data, act, variant, factor, x, y)
        runs, curves, hessian = runs + r, curves + c, hessian + h
    held = {k: getattr(cfg.train, k) for k in ("optimizer", "epochs", "batch_size")}
    return {
        "dataset": data_record(data),
        "widths": [data.input_dim, *cfg.hidden, data.output_dim],
        "activations": list(cfg.activations),
        "lr_factors": list(cfg.lr_factors),
        "held_equal": {**held, "init": cfg.init, "seeds": cfg.seeds},
        "probe_lr": cfg.train.lr,
        "probe_examples": int(x.shape[0]),
        "target_loss": cfg.target_loss,
        "runs": runs,
        "curves": curves,
        "hessian": hessian,
    }


def _bands(ax, rows: list, key: str, x: str, log: bool = True) -> None:
    """Per variant: ``key`` against ``x``, mean over seeds (geometric with ``log``) and band."""
    for i, variant in enumerate(VARIANTS):
        vs = [r for r in rows if r["variant"] == variant]
        runs = [[r[key] for r in rs] for rs in group_rows(vs, "seed").values()]
        if runs:
            xs = [r[x] for r in vs[: len(runs[0])]]
            mean_band(ax, xs, np.array(runs, dtype=float), variant, COLORS[i], log=log)


def _range_figure(results: dict):
    acts = results["activations"]
    fig, axes = new_figure(ncols=len(acts), width=5.0, squeeze=False, sharey=True)
    for ax, act in zip(axes[0], acts, strict=True):
        for i, variant in enumerate(VARIANTS):
            rows = [r for r in results["runs"] if (r["activation"], r["variant"]) == (act, variant)]
            ok = [r for r in rows if not r["diverged"]]
            x, y = [r["lr"] for r in ok], [r["final_train_mode_loss"] for r in ok]
            ax.scatter(x, y, s=20, color=COLORS[i], label=f"{variant} (n={len(ok)})")
            bad = [r["lr"] for r in rows if r["diverged"]]  # x markers at the top edge
            label = f"{variant}: diverged (n={len(bad)})"
            top = {"transform": ax.get_xaxis_transform(), "clip_on": False, "marker": "x"}
            ax.scatter(bad, [1.0] * len(bad), color=COLORS[i], label=label, **top)
        ax.axhline(results["target_loss"], color="gray", ls="--", lw=0.8)
        lrs = [r["lr"] for r in results["runs"] if r["activation"] == act]  # the x markers
        ax.set(xscale="log", yscale="log", xlabel="learning rate", title=act)
        ax.set_xlim(min(lrs) / 2, max(lrs) * 2)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("last epoch's training-mode loss")
    fig.suptitle("Which learning rates train (dashed: target; x at the top: diverged)")
    fig.tight_layout()
    return fig


def _curves_figure(results: dict):
    acts, factors = results["activations"], results["lr_factors"]
    shape = {"ncols": len(factors), "nrows": len(acts), "squeeze": False, "sharey": True}
    fig, axes = new_figure(width=3.2, height=2.8, sharex=True, **shape)
    for ax, (act, factor) in zip(axes.flat, itertools.product(acts, factors), strict=True):
        rows = [r for r in results["curves"] if (r["activation"], r["factor"]) == (act, factor)]
        _bands(ax, rows, "loss", "epoch")
        ax.axhline(results["target_loss"], color="gray", ls="--", lw=0.8)
        ax.set(yscale="log", xlabel="epoch")
        ax.set_title(f"{act}, lr {results['probe_lr'] * factor:g}", fontsize=9)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylim(top=min(axes[0, 0].get_ylim()[1], 100.0))  # a blow-up flattens the rest
    fig.suptitle("Training-mode loss (geometric mean, band min-max; dashed: target; y cut at 100)")
    fig.tight_layout()
    return fig


def _hessian_figure(results: dict):
    acts, lr = results["activations"], results["probe_lr"]
    fig, axes = new_figure(ncols=len(acts), width=5.0, squeeze=False)
    for ax, act in zip(axes[0], acts, strict=True):
        rows = [r for r in results["hessian"] if r["activation"] == act]
        values = np.array([r["top_eigenvalue"] for r in rows], dtype=float)
        positive = bool((values[np.isfinite(values)] > 0).all())
        _bands(ax, rows, "top_eigenvalue", "epoch", log=positive)
        if not np.isfinite(values).any():
            no_data(ax, "every run diverged before it was probed")
        ax.axhline(2 / lr, color="gray", ls=":", lw=0.8, label="2 / lr")
        ax.set(xlabel="epoch", ylabel="top Hessian eigenvalue", title=f"{act}, lr {lr:g}")
        ax.set_yscale("log" if positive else "linear")
        ax.legend(fontsize=8)
    fig.suptitle("Sharpness along training (BN in eval mode, training-set statistics)")
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    return {"lr-range": _range_figure(results), "curves": _curves_figure(results),
            "hessian": _hessian_figure(results)}  # fmt: skip


def _variant(rows: list, eigs: list) -> dict:
    """Trainable lrs (every seed reached the target, none diverged), the fastest (median
    epochs to target, lr), the median top Hessian eigenvalue after epoch 0 and its n."""
    by_lr = group_rows(rows, "lr")
    ok = {lr: [r["epochs_to_target"] for r in rs] for (lr,), rs in by_lr.items()}
    ok = {lr: e for lr, e in ok.items() if all(e)}
    fastest = min(((float(np.median(e)), lr) for lr, e in ok.items()), default=None)
    eigs = [v for v in eigs if v is not None and math.isfinite(v)]  # JSON: NaN is None
    eig = float(np.median(eigs)) if eigs else math.nan
    return {"trainable": list(ok), "fastest": fastest, "eig": eig, "n_eig": len(eigs)}


def _median(rows: list, key: str):  # of the finite values, "-" when there are none
    values = [r[key] for r in rows if r[key] is not None and math.isfinite(r[key])]
    return float(np.median(values)) if values else "-"


def _lrs(f: dict) -> str:
    return ", ".join(f"{lr:g}" for lr in f["trainable"]) or "none of the grid"


def _lr_row(act: str, variant: str, lr: float, rs: list) -> dict:
    reached = [r for r in rs if r["epochs_to_target"]]
    return {"activation": act, "variant": variant, "lr": lr,
            "reached target": f"{len(reached)} of {len(rs)}",
            "diverged": sum(r["diverged"] for r in rs),
            "median epochs to target": _median(reached, "epochs_to_target"),
            "last training-mode loss (median)": _median(rs, "final_train_mode_loss"),
            "test accuracy, eval mode (median)": _median(rs, "test_accuracy")}  # fmt: skip


def notes(results: dict) -> Notes:
    held, probe_lr = results["held_equal"], results["probe_lr"]
    lines = [
        f"Held equal: MLP {'-'.join(map(str, results['widths']))} with or without BatchNorm, "
        f"{held['init']} init, {held['optimizer']}, batch {held['batch_size']}, {held['epochs']}"
        f" epochs, {held['seeds']} seeds per setting. Trainable: every seed's training-mode loss "
        f"below {results['target_loss']:g} in the budget. Hessian on {results['probe_examples']}"
        " training examples, BatchNorm in eval mode with the training set's statistics."
    ]
    summary, table, fidelity = {}, [], []
    eigs = group_rows([r for r in results["hessian"] if r["epoch"] > 0], "activation", "variant")
    for (act,), rows in group_rows(results["runs"], "activation").items():
        found = {}
        for v in VARIANTS:
            probed = [r["top_eigenvalue"] for r in eigs.get((act, v), [])]
            found[v] = f = _variant([r for r in rows if r["variant"] == v], probed)
            summary[f"{act}, {v}: trainable learning rates"] = f["trainable"]
            summary[f"{act}, {v}: median top Hessian eigenvalue"] = f["eig"]
        lines.append(
            f"{act}: trainable with BN at lr {_lrs(found['batch norm'])}; without BN at lr "
            f"{_lrs(found['plain'])} (epochs and the Hessian: fidelity table)."
        )
        by_lr = group_rows(rows, "variant", "lr")
        table += [_lr_row(act, v, lr, rs) for (v, lr), rs in by_lr.items()]
        fidelity += _fidelity(act, found, probe_lr)
    where = ("activation", "variant", "lr")
    lines += diverged_lines(results["runs"], "count as not trainable at their lr", where)
    return Notes(summary, lines, [("Per learning rate", table)], fidelity)


def _fidelity(act: str, found: dict, probe_lr: float) -> list[dict]:
    plain, bn = found["plain"], found["batch norm"]
    top = [max(f["trainable"], default=None) for f in (bn, plain)]
    fast = [f["fastest"][0] if f["fastest"] else None for f in (bn, plain)]
    shown = ["none" if v is None else f"{v:g}" for v in (*top, *fast)]  # lr, lr, epochs, epochs
    eig, probed = (bn["eig"], plain["eig"]), bn["n_eig"] > 0 and plain["n_eig"] > 0
    rows = [  # claim, reference, measured, reproduced, why not
        (f"{act}: BN trains at larger learning rates", "Ioffe & Szegedy 2015 (lecture: 5x "
         "the learning rate with BN)", f"largest trainable lr {shown[0]} with BN, {shown[1]} "
         "without", top[0] is not None and (top[1] is None or top[0] > top[1]), "not larger"),
        (f"{act}: BN reaches the target in fewer epochs (each at its fastest lr)", "Ioffe & "
         "Szegedy 2015, Fig. 1 (MNIST, 3 x 100 sigmoid)", f"median epochs {shown[2]} with BN, "
         f"{shown[3]} without", fast[0] is not None and (fast[1] is None or fast[0] < fast[1]),
         "BN is not faster"),
        (f"{act}: BN smooths the loss surface (lower top Hessian eigenvalue)", "Santurkar et "
         "al. 2018 (lecture: a smoother error surface)", f"median at lr {probe_lr:g}: "
         f"{eig[0]:.3g} with BN, {eig[1]:.3g} without", probed and eig[0] < eig[1],
         "not lower with BN" if probed else "a variant was not probed"),
    ]  # fmt: skip
    if act == "sigmoid":  # the lecture's figure: sigmoid fails without BN, trains with it
        rows.insert(0, ("sigmoid: fails without BN, trains with it", "lecture L8 on Ioffe & "
                        "Szegedy's Fig. 1", f"trainable lrs {_lrs(bn)} with BN, {_lrs(plain)} "
                        "without", bool(bn["trainable"]) and not plain["trainable"],
                        "it trains without BN too" if plain["trainable"] else "not with BN"))  # fmt: skip
    return [fidelity_row(*row) for row in rows]


EXPERIMENT = Experiment(
    id="batch-norm",
    item="Lecture L8",
    part="normalization",
    rank=1,
    title="Batch normalization: learning-rate range, speed, smoothness",
    question="With BatchNorm, does a net train at more learning rates, faster, more smoothly?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "lr-range": "last epoch's training-mode loss of every run against its learning rate",
        "curves": "training-mode loss per epoch at every learning rate, with and without BN",
        "hessian": "top Hessian eigenvalue along the run at train.lr (dotted: 2 / lr)",
    },
    quick_minutes=0.9,  # 53.5 s wall on the idle 2-core CPU, start-up included
    full_differs="digits, 15 epochs, lr 0.3-30 (full: MNIST, 50 epochs of batch 60, lr 0.009-30)",
)

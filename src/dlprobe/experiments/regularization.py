"""Tips for deep learning: early stopping, L1 vs L2 regularization, dropout.

Protocol: a seeded validation set is carved from the training split; models train on a
subset of the rest, one population of seeds per setting (none, each L2 or L1 strength, each
dropout rate; same model, optimizer, lr, batch, epochs). Each keeps its parameters at its
lowest validation loss (early stopping); those and its final ones are tested. Claims:
early stopping helps; L1 zeroes weights, L2 shrinks them; both and dropout help on test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    fidelity_row,
    group_rows,
    mean_band,
    mean_std,
    new_figure,
    require,
    seeds_from,
    series,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.sweep import DATASET_SIZES
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import Population, TrainConfig, evaluate_population

BINS = np.linspace(-8, 1, 46)  # log10 |w| bin edges of the weight histograms
COLUMNS = (  # the report's table: column -> key of the final rows (mean ± sd over runs)
    ("train accuracy", "train_accuracy"), ("test accuracy", "test_accuracy"),
    ("gap (train - test)", "gap"), ("test accuracy, early-stopped", "best_test_accuracy"),
    ("gap, early-stopped", "best_gap"), ("share of near-zero weights", "sparsity"),
    ("mean |w|", "mean_abs_weight"),
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    validation: PosInt = 500  # examples carved from the training split to choose the epoch
    train_subset: NonNegInt = 1000  # training examples from the rest (0: all of the rest)
    hidden: tuple[PosInt, ...] = (128, 128)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    seeds: PosInt = 3  # models per setting, trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also draws the validation split
    l2: tuple[PosFloat, ...] = (1e-2,)  # L2 strengths λ (weight decay: gradient + λθ)
    l1: tuple[PosFloat, ...] = (1e-3,)  # L1 strengths λ (gradient + λ sign θ)
    dropout: tuple[Annotated[float, Bound(gt=0, lt=1)], ...] = (0.2, 0.5)  # hidden units' rates
    zero_below: PosFloat = 1e-3  # a weight with |w| below this counts as zero (sparsity)
    # training; every setting gets these, plus its penalty or dropout
    train: TrainConfig = TrainConfig(optimizer="momentum", lr=0.02, epochs=40, batch_size=32)

    def check(self) -> None:
        n, used = DATASET_SIZES[self.dataset][0], self.validation + max(self.train_subset, 1)
        require(used <= n, f"validation + train_subset must fit in {self.dataset}'s {n}")
        penalties = self.train.weight_decay, self.train.l1_penalty
        require(penalties == (0, 0), "set penalties with l2 and l1, not in train")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)


# fmt: off
PROFILES = {
    "smoke": {"validation": 100, "train_subset": 200, "hidden": (16,), "seeds": 2,
              "l2": (1e-2,), "l1": (1e-3,), "dropout": (0.5,), "train.epochs": 4},
    "full": {"dataset": "mnist", "validation": 5000, "train_subset": 0, "hidden": (512, 512),
             "l2": (1e-4, 1e-3), "l1": (1e-5, 1e-4), "train.epochs": 50},
}
# fmt: on


def settings(cfg: Config) -> list[dict]:
    """Every setting: its label, kind (none, L2, L1, dropout) and strength."""
    kinds = (("none", (0.0,)), ("L2", cfg.l2), ("L1", cfg.l1), ("dropout", cfg.dropout))
    return [{"setting": f"{k} {v:g}" if v else k, "kind": k, "strength": v}
            for k, values in kinds for v in values]  # fmt: skip


def split(data, cfg: Config):
    """(training data whose test split is the validation set, test x, test y)."""
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(data.n_train, generator=g).to(data.x_train.device)
    val, rest = perm[: cfg.validation], perm[cfg.validation :]
    fit = rest[: cfg.train_subset] if cfg.train_subset else rest
    fitting = replace(data, x_train=data.x_train[fit], y_train=data.y_train[fit],
                      x_test=data.x_train[val], y_test=data.y_train[val])  # fmt: skip
    return fitting, data.x_test, data.y_test


def _test(pop: Population, flat: torch.Tensor | None, x, y) -> tuple[list, list]:
    """Loss and accuracy per model on (x, y) with parameters ``flat`` (K, P) (None: as is)."""
    kept = pop.flat_params()
    if flat is not None:
        pop.load_flat_params(flat)
    loss, acc = evaluate_population(pop, x, y, F.cross_entropy)
    pop.load_flat_params(kept)
    return loss.tolist(), acc.tolist()


def _final_rows(s: dict, hist, end: tuple, best: tuple, weights, zero_below: float) -> list:
    """Per model: the setting, the trainer's final record (its test columns: validation), test
    (loss, accuracy) at the end and early-stopped, weights' sparsity; NaN if it diverged."""
    rows = []
    for k, r in enumerate(hist.final_records()):
        e = None if r["diverged"] else hist.best_epoch[k]
        end_loss, end_acc = (math.nan, math.nan) if r["diverged"] else (end[0][k], end[1][k])
        best_loss, best_acc = (math.nan, math.nan) if e is None else (best[0][k], best[1][k])
        best_train = math.nan if e is None else hist.train_accuracy[hist.epochs.index(e)][k]
        val = np.nan_to_num(np.array(hist.test_accuracy, dtype=float)[:, k], nan=-1.0)  # (T,)
        peak = None if r["diverged"] else hist.epochs[int(val.argmax())]
        rows.append({**s, **r, "val_loss": r["test_loss"], "val_accuracy": r["test_accuracy"],
                     "test_loss": end_loss, "test_accuracy": end_acc, "best_epoch": e,
                     "best_test_loss": best_loss, "best_test_accuracy": best_acc,
                     "best_train_accuracy": best_train, "gap": r["train_accuracy"] - end_acc,
                     "best_gap": best_train - best_acc, "peak_val_epoch": peak,
                     "sparsity": float((weights[k].abs() < zero_below).float().mean()),
                     "mean_abs_weight": float(weights[k].abs().mean())})  # fmt: skip
    return rows


def _train_setting(cfg: Config, ctx: RunContext, s: dict, data, test, widths) -> dict:
    """Train one setting's population: its curves, final rows and weight histogram."""
    kind, strength = s["kind"], s["strength"]
    factory = partial(MLP, widths, cfg.activation, dropout=strength if kind == "dropout" else 0)
    pop = Population(factory, seeds_from(cfg.seed, cfg.seeds), ctx.device)
    train = replace(cfg.train, keep_best_test_loss=True, weight_decay=strength * (kind == "L2"),
                    l1_penalty=strength * (kind == "L1"))  # fmt: skip
    hist = ctx.train(s["setting"].replace(" ", "-"), pop, data, train)
    rename = {"test_loss": "val_loss", "test_accuracy": "val_accuracy"}
    curves = [{"setting": s["setting"], **{rename.get(k, k): v for k, v in r.items()}}
              for r in hist.epoch_records()]  # fmt: skip
    end, best = _test(pop, None, *test), _test(pop, hist.best_params, *test)
    weights = torch.cat(  # (K, W): every linear layer's weights, no biases
        [p.detach().reshape(pop.size, -1).cpu() for n, p in pop.params.items() if "weight" in n], 1
    )
    alive = [k for k in range(pop.size) if hist.diverged_at_epoch[k] is None]
    logs = np.log10(np.clip(weights[alive].abs().numpy().ravel(), 1e-300, None))
    counts, _ = np.histogram(np.clip(logs, BINS[0], BINS[-1]), BINS)
    histogram = {"setting": s["setting"], "runs": len(alive), "counts": counts.tolist()}
    final = _final_rows(s, hist, end, best, weights, cfg.zero_below)
    return {"curves": curves, "final": final, "histogram": histogram}


def run(cfg: Config, ctx: RunContext) -> dict:
    data, x_test, y_test = split(ctx.dataset(cfg.dataset), cfg)
    widths = [data.input_dim, *cfg.hidden, data.output_dim]
    parts = [_train_setting(cfg, ctx, s, data, (x_test, y_test), widths) for s in settings(cfg)]
    return {
        "dataset": {"name": data.name, "train": data.n_train, "validation": data.n_test,
                    "test": int(x_test.shape[0])},
        "widths": widths,
        "params": mlp_param_count(widths, cfg.activation),
        "held_equal": {k: getattr(cfg.train, k) for k in ("optimizer", "lr", "epochs", "batch_size")},
        "zero_below": cfg.zero_below,
        "bins": BINS.tolist(),
        "seeds": seeds_from(cfg.seed, cfg.seeds),
        "curves": [r for p in parts for r in p["curves"]],
        "final": [r for p in parts for r in p["final"]],
        "histograms": [p["histogram"] for p in parts],
    }  # fmt: skip


def _dots(ax, results: dict, keys: tuple, names: tuple) -> int:
    """Per setting along x, one dot per run that did not diverge, for each key; the dots."""
    labels, drawn = [h["setting"] for h in results["histograms"]], 0
    for j, (key, name) in enumerate(zip(keys, names, strict=True)):
        for i, label in enumerate(labels):
            v = [r[key] for r in results["final"] if r["setting"] == label and not r["diverged"]]
            ax.scatter([i + 0.3 * (j - 0.5)] * len(v), v, color=COLORS[j], s=18,
                       label=f"{name}" if i == 0 else None)  # fmt: skip
            drawn += len(v)
    ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
    ax.legend(fontsize=8)
    return drawn


def _early_stopping_figure(results: dict):
    fig, (ax, ax_val, ax_acc) = new_figure(ncols=3, width=4.6)
    rows = [r for r in results["curves"] if r["setting"] == "none"]
    for i, (key, label) in enumerate((("train_loss", "training"), ("val_loss", "validation"))):
        mean_band(ax, *series(rows, "epoch", key), label, COLORS[i], log=True)
    for r in results["final"]:
        if r["setting"] == "none" and r["best_epoch"] is not None:
            ax.axvline(r["best_epoch"], color=COLORS[1], ls=":", lw=0.8)
    ax.set_title("No regularization (dotted: each run's chosen epoch)", fontsize=9)
    for i, h in enumerate(results["histograms"]):
        rows = [r for r in results["curves"] if r["setting"] == h["setting"]]
        band = series(rows, "epoch", "val_loss")
        mean_band(ax_val, *band, h["setting"], COLORS[i % 10], log=True)
    ax_val.set_title("Validation loss per setting (band: min-max)", fontsize=9)
    for a in (ax, ax_val):
        a.set(yscale="log", xlabel="epoch", ylabel="loss (cross-entropy)")
        a.legend(fontsize=7)
    _dots(ax_acc, results, ("test_accuracy", "best_test_accuracy"), ("end", "early-stopped"))
    ax_acc.set(ylabel="test accuracy", title="Test accuracy of each run")
    fig.tight_layout()
    return fig


def _weights_figure(results: dict):
    fig, ax = new_figure(width=6.5)
    for i, h in enumerate(results["histograms"]):
        counts = np.array(h["counts"], dtype=float)
        if counts.sum() > 0:
            ax.stairs(counts / counts.sum(), results["bins"], color=COLORS[i % 10],
                      label=f"{h['setting']} (n={h['runs']} runs)")  # fmt: skip
    ax.axvline(np.log10(results["zero_below"]), color="gray", ls="--", lw=0.8)
    ax.set(xlabel="log10 |w| (all layers' weights; the end bins hold the clipped)",
           ylabel="fraction of weights", yscale="log")  # fmt: skip
    ax.set_title("Final weights (dashed: counted as zero below it)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _gap_figure(results: dict):
    fig, axes = new_figure(ncols=2, width=5.2)
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        drawn = _dots(ax, results, (f"train_{metric}", f"test_{metric}"), ("train", "test"))
        ax.set(ylabel=f"final {metric}", yscale="log" if metric == "loss" and drawn else "linear")
    fig.suptitle("Training vs test at the end, one dot per run (diverged runs left out)")
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    return {
        "early-stopping": _early_stopping_figure(results),
        "weights": _weights_figure(results),
        "gap": _gap_figure(results),
    }


def _ms(values) -> str:
    m, sd = mean_std(values)
    return f"{m:.3g} ± {sd:.2g} (n={len(values)})" if values else "-"


def notes(results: dict) -> Notes:
    held, d = results["held_equal"], results["dataset"]
    lines = [
        f"Held equal: MLP {'-'.join(map(str, results['widths']))} ({results['params']} "
        f"parameters), {held['optimizer']} at lr {held['lr']:g}, batch {held['batch_size']}, "
        f"{held['epochs']} epochs, {len(results['seeds'])} seeds per setting; {d['train']} "
        f"training, {d['validation']} validation (from {d['name']}'s training split), "
        f"{d['test']} test examples. Early stopping: the epoch of lowest validation loss."
    ]
    summary, table, fine = {}, [], {}  # fine: label -> runs that did not diverge
    for (label,), rows in group_rows(results["final"], "setting").items():
        fine[label] = ok = [r for r in rows if not r["diverged"]]
        summary[f"{label}: mean train - test accuracy at the end"] = _mean(ok, "gap")
        table.append({"setting": label, "runs": f"{len(ok)} of {len(rows)}",
                      "chosen epochs": ", ".join(str(r["best_epoch"]) for r in ok),
                      "peak validation accuracy at": ", ".join(str(r["peak_val_epoch"]) for r in ok),
                      **{name: _ms([r[key] for r in ok]) for name, key in COLUMNS}})  # fmt: skip
    if none := fine.get("none"):
        loss_at, peak_at = [r["best_epoch"] for r in none], [r["peak_val_epoch"] for r in none]
        before = sum(a < b for a, b in zip(loss_at, peak_at, strict=True))
        lines.append(f"Without regularization the validation loss is lowest at epochs {loss_at}, "
                     f"the validation accuracy highest at epochs {peak_at}: the loss chooses an "
                     f"earlier epoch in {before} of {len(none)} runs.")  # fmt: skip
    lines += diverged_lines(results["final"], "are left out of every statistic", ("setting",))
    fidelity = _fidelity(fine, results["held_equal"]["epochs"])
    return Notes(summary, lines, [("Per setting (mean ± sd over runs)", table)], fidelity)


def _mean(rows: list, key: str) -> float:
    return mean_std([r[key] for r in rows])[0]


def _fidelity(fine: dict, epochs: int) -> list[dict]:
    """The lecture's claims, each where its settings ran (over the runs that did not diverge)."""
    rows, none = [], fine.get("none", [])
    ranked = sorted((rs[0]["strength"], label) for label, rs in fine.items() if rs)
    strongest = {fine[label][0]["kind"]: label for _, label in ranked}  # largest strength wins
    slides = "Tips slides: "
    if none:
        chosen = [r["best_epoch"] for r in none]
        turned = any(e is not None and e < epochs for e in chosen)
        for metric, sign in (("loss", -1), ("accuracy", 1)):
            best, end = _mean(none, f"best_test_{metric}"), _mean(none, f"test_{metric}")
            better = "lower" if sign < 0 else "higher"
            why = f"it is not {better}" if turned else "no run stopped early"
            rows.append(fidelity_row(
                f"early stopping (lowest validation loss) gives a better test {metric}", slides +
                "stop where the validation loss is lowest", f"{best:.3g} early-stopped (epochs "
                f"{chosen}) vs {end:.3g} after {epochs}", turned and sign * (best - end) > 0, why))  # fmt: skip
    if "L1" in strongest and "L2" in strongest:
        l1, l2 = strongest["L1"], strongest["L2"]
        s1, s2 = _mean(fine[l1], "sparsity"), _mean(fine[l2], "sparsity")
        rows.append(fidelity_row(
            "L1 drives weights to zero, L2 only shrinks them", slides + "L1 subtracts a "
            "constant each update, L2 a share of the weight", f"share of near-zero weights "
            f"{s1:.3f} ({l1}) vs {s2:.3f} ({l2})", s1 > s2, "L2 leaves more near-zero weights"))  # fmt: skip
    for label, rs in fine.items():
        if label == "none" or not rs or not none:
            continue
        acc, gap = _mean(rs, "test_accuracy"), _mean(rs, "gap")
        acc0, gap0 = _mean(none, "test_accuracy"), _mean(none, "gap")
        why = "the test accuracy is not higher" if acc <= acc0 else "the gap is not narrower"
        rows.append(fidelity_row(
            f"{label}: better test accuracy and a narrower train/test gap", slides +
            "regularization and dropout for good results on testing data", f"test accuracy "
            f"{_ms([r['test_accuracy'] for r in rs])} vs {_ms([r['test_accuracy'] for r in none])}"
            f" (none); gap {gap:.3f} vs {gap0:.3f}", acc > acc0 and gap < gap0, why))  # fmt: skip
    return rows


EXPERIMENT = Experiment(
    id="regularization",
    item="Tips",
    part="tips",
    rank=2,
    title="Early stopping, L1 vs L2, dropout",
    question="Does early stopping help; does L1 zero weights where L2 shrinks them; do "
    "penalties and dropout help on test data?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "early-stopping": "loss curves and chosen epochs without regularization, validation "
        "loss per setting, test accuracy at the end and early-stopped",
        "weights": "histogram of |w| of the final weights per setting (log-log)",
        "gap": "final training vs test accuracy and loss, one dot per run",
    },
    quick_minutes=0.9,  # 54 s CPU, 1 torch thread, load ~10 (see git log)
    full_differs="mnist1d, 1000 examples, 128 units, 40 epochs (full: MNIST, 55 000, 512, 50).",
)

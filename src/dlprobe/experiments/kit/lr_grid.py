"""A fair learning rate for every setting compared (optimizer, loss, ...): each trains at
every lr of one grid on part of the training set; the lr with the best mean validation
accuracy on the held-out rest is selected, and the untouched test split reports it.

Rows are tidy: one per (setting, lr, seed) with what the run reached, and per-epoch curves.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from dlprobe.data import Dataset
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

from .context import RunContext
from .plotting import COLORS, log_scale_if_positive, mean_band, no_data
from .stats import column, group_rows, mean_std, series


def validation_split(data: Dataset, fraction: float, seed: int) -> Dataset:
    """``data`` with a seeded ``fraction`` of its training set moved into the test split
    (which the trainer then evaluates as validation); the real test split is dropped."""
    n_val = max(1, round(fraction * data.n_train))
    idx = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(seed))
    val, fit = idx[:n_val].to(data.x_train.device), idx[n_val:].to(data.x_train.device)
    x, y = data.x_train, data.y_train
    return replace(data, x_train=x[fit], y_train=y[fit], x_test=x[val], y_test=y[val])


def train_rows(
    ctx: RunContext,
    key: str,
    pop: Population,
    fit: Dataset,
    data: Dataset,
    cfg: TrainConfig,
    tag: dict,
    loss_fn=None,
) -> tuple[list[dict], list[dict]]:
    """Train ``pop`` on ``fit`` (stage ``key``) and evaluate it on ``data``'s test split.

    Returns (final rows, curve rows), each starting with ``tag``: final rows hold the train,
    validation (``fit``'s test split) and test loss and accuracy and the divergence fields
    (test numbers NaN for a diverged model); curve rows the train loss and validation
    accuracy per evaluated epoch.
    """
    loss_fn = loss_fn or default_loss(data)
    hist = ctx.train(key, pop, fit, cfg, loss_fn=loss_fn)
    test_loss, test_acc = evaluate_population(pop, data.x_test, data.y_test, loss_fn)  # (K,)
    finals = []
    for k, r in enumerate(hist.final_records()):
        bad = r["diverged"]
        finals.append(
            {
                **tag,
                "seed": r["seed"],
                "train_loss": r["train_loss"],
                "train_accuracy": r["train_accuracy"],
                "val_loss": r["test_loss"],
                "val_accuracy": r["test_accuracy"],
                "test_loss": math.nan if bad else float(test_loss[k]),
                "test_accuracy": math.nan if bad else float(test_acc[k]),
                **{n: r[n] for n in ("diverged", "diverged_at_epoch", "diverged_reason")},
            }
        )
    curves = [
        {**tag, "seed": r["seed"], "epoch": r["epoch"], "train_loss": r["train_loss"],
         "val_accuracy": r["test_accuracy"]}
        for r in hist.epoch_records()
    ]  # fmt: skip
    return finals, curves


def select_lr(rows: list[dict]) -> float | None:
    """The lr of ``rows`` (one setting) with the best mean validation accuracy, ties broken
    by the lower mean validation loss, among the lrs at which no seed diverged; None when
    every lr had a diverged seed."""
    ok = [
        (-mean_std(r["val_accuracy"] for r in rs)[0], mean_std(r["val_loss"] for r in rs)[0], lr)
        for (lr,), rs in group_rows(rows, "lr").items()
        if not any(r["diverged"] for r in rs)
    ]
    ok = [t for t in ok if not math.isnan(t[0])]
    return min(ok)[2] if ok else None


def at_selected(rows: list[dict], selected: dict, setting: str) -> dict[str, list[dict]]:
    """Rows of each setting at its selected lr (settings with none are left out)."""
    return {
        name: [r for r in rows if r[setting] == name and r["lr"] == lr]
        for name, lr in selected.items()
        if lr is not None
    }


def draw_lr_grid(axes, rows: list[dict], selected: dict, setting: str) -> None:
    """Two panels: final validation accuracy and train loss against lr per setting (mean
    and min-max bars over its non-diverged seeds), a ring at the selected lr."""
    for i, ((name,), rs) in enumerate(group_rows(rows, setting).items()):
        by_lr = group_rows(rs, "lr")
        lrs = [lr for (lr,) in by_lr]
        color = COLORS[i % len(COLORS)]
        for ax, metric in zip(axes, ("val_accuracy", "train_loss"), strict=True):
            runs = [[r[metric] for r in g if not r["diverged"]] for g in by_lr.values()]
            mid = np.array([np.mean(v) if v else np.nan for v in runs])
            lo = mid - np.array([min(v) if v else np.nan for v in runs])
            hi = np.array([max(v) if v else np.nan for v in runs]) - mid
            ax.errorbar(lrs, mid, yerr=[lo, hi], color=color, marker="o", ms=4, capsize=2,
                        label=name)  # fmt: skip
            if selected.get(name) is not None:
                ax.plot(selected[name], mid[lrs.index(selected[name])], "o", ms=11,
                        mfc="none", color=color)  # fmt: skip
    axes[0].set(xscale="log", xlabel="learning rate", ylabel="final validation accuracy")
    axes[1].set(xscale="log", xlabel="learning rate", ylabel="final train loss")
    axes[0].legend(fontsize=7, ncol=2)


def draw_curves(axes, runs_by_name: dict[str, list[dict]], loss_label: str) -> None:
    """Two panels: training loss (log, geometric mean) and validation accuracy per epoch,
    a min-max band over seeds, per named group of curve rows; a blank panel when none."""
    rows = [r for g in runs_by_name.values() for r in g]
    if not np.isfinite(column(rows, "train_loss")).any():
        for ax in axes:
            no_data(ax, "every run diverged")
        return
    for i, (name, group) in enumerate(runs_by_name.items()):
        for ax, key in zip(axes, ("train_loss", "val_accuracy"), strict=True):
            xs, runs = series(group, "epoch", key)
            mean_band(ax, xs, runs, name, COLORS[i % len(COLORS)], log=key == "train_loss")
    log_scale_if_positive(axes[0], column(rows, "train_loss"))
    axes[0].set(xlabel="epoch", ylabel=f"training loss ({loss_label})")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
    axes[1].legend(fontsize=7, ncol=2)

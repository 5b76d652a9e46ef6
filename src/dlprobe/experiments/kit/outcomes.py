"""How a training run ended: diverged, collapsed, not converged, or fine.

A comparison of settings (depths, families, sizes) measures what a setting can do only
over the runs that trained: a deep net whose output collapsed to a constant says nothing
about what depth can express (that is trainability, not expressivity). The outcomes, in
the order they are checked:

- diverged: the trainer froze it for a non-finite or exploding loss (``History.diverged``);
- collapsed: its output is (nearly) the same for every training input, and its training
  loss sits at the loss of the best constant prediction (the targets' variance for
  regression, the entropy of the class frequencies for classification);
- not converged: it trained, but missed what the experiment asks of it (a loss or accuracy
  target, named by the experiment);
- fine: the rest.

A run row carries ``output_spread`` and ``constant_loss`` (from ``collapse_probe``) next to
its ``train_loss`` and ``diverged``, so an outcome can be recomputed from saved results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from dlprobe import DlprobeError
from dlprobe.train import Population

from .stats import finite, group_rows

FINE, NOT_CONVERGED, COLLAPSED, DIVERGED = "fine", "not converged", "collapsed", "diverged"
OUTCOMES = (FINE, NOT_CONVERGED, COLLAPSED, DIVERGED)
MARKERS = {FINE: "o", NOT_CONVERGED: "s", COLLAPSED: "x", DIVERGED: "^"}  # in figures
# Collapsed: output spread below this (regression: std of the outputs over the training
# inputs / std of the targets; classification: mean total-variation distance of each
# input's predicted class probabilities from their mean). A net whose ReLUs all died
# outputs its last bias: spread 0 up to rounding. Kept small so that a net that merely
# has not learned much yet (spread 0.02-0.3 after a few steps) is not called collapsed ...
COLLAPSE_SPREAD = 0.01
# ... and training loss at least this share of the best constant prediction's loss (for
# MSE a spread below 0.01 already implies about 0.98 of the variance).
COLLAPSE_LOSS = 0.9


def constant_loss(y: torch.Tensor) -> float:
    """Loss of the best constant prediction of targets ``y``: MSE = their variance (mean
    over output dimensions) for float targets (n, d); cross-entropy = the entropy of the
    class frequencies, in nats, for integer labels (n,)."""
    if y.is_floating_point():
        return float(y.reshape(y.shape[0], -1).var(0, unbiased=False).mean())
    freq = torch.bincount(y.reshape(-1)).double() / y.numel()
    freq = freq[freq > 0]
    return float(-(freq * freq.log()).sum())


def output_spread(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) how much each model's output varies over the inputs; 0 for a constant model.

    Args:
        outputs: (K, n, d) outputs of K models on the same n inputs (logits for labels).
        y: the n targets: float (n, d) for regression, integer labels (n,) otherwise.

    Returns: for regression the std of the outputs over the inputs divided by the std of
    the targets (mean over the d dimensions); for classification the mean over inputs of
    the total-variation distance between the input's class probabilities and their mean.
    """
    if outputs.dim() != 3 or outputs.shape[1] != y.shape[0]:
        raise DlprobeError(f"outputs must be (K, n, d) for n={y.shape[0]}, got {outputs.shape}")
    if y.is_floating_point():
        target_std = y.reshape(y.shape[0], -1).std(0, unbiased=False)  # (d,)
        if not bool((target_std > 0).all()):
            raise DlprobeError("constant targets: an output spread relative to them is undefined")
        return (outputs.std(1, unbiased=False) / target_std).mean(-1)  # (K,)
    p = outputs.softmax(-1)  # (K, n, C)
    return 0.5 * (p - p.mean(1, keepdim=True)).abs().sum(-1).mean(-1)


@torch.no_grad()
def collapse_probe(pop: Population, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Per model of ``pop``: ``output_spread`` on (x, y) and the ``constant_loss`` of y.

    The population is evaluated in eval mode and left in training mode, as the trainer
    leaves it."""
    pop.train(False)
    try:
        spread = output_spread(pop.forward(x, shared=True), y).tolist()  # (K,)
    finally:
        pop.train(True)
    base = constant_loss(y)
    return [{"output_spread": s, "constant_loss": base} for s in spread]


def is_collapsed(spread: float, train_loss: float | None, constant: float) -> bool:
    """Output (nearly) constant and loss at the constant prediction's loss (see module)."""
    if train_loss is None or not math.isfinite(train_loss):
        return False
    return spread < COLLAPSE_SPREAD and train_loss >= COLLAPSE_LOSS * constant


def outcome(row: dict, converged: bool = True) -> str:
    """The outcome of a run row (``diverged``, ``output_spread``, ``constant_loss``,
    ``train_loss``); ``converged``: whether it met the experiment's target."""
    if row["diverged"]:
        return DIVERGED
    if is_collapsed(row["output_spread"], row["train_loss"], row["constant_loss"]):
        return COLLAPSED
    return FINE if converged else NOT_CONVERGED


def fine_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows whose ``outcome`` is fine: the ones a comparison is made over."""
    return [r for r in rows if r["outcome"] == FINE]


def outcome_table(rows: Sequence[dict], *keys: str) -> list[dict]:
    """One record per group of ``keys``: its runs and how many ended in each outcome."""
    out = []
    for values, rs in group_rows(rows, *keys).items():
        counts = {o: sum(r["outcome"] == o for r in rs) for o in OUTCOMES}
        out.append({**dict(zip(keys, values, strict=True)), "runs": len(rs), **counts})
    return out


def excluded_lines(
    rows: Sequence[dict], name: Callable[[dict], str], target: str | None = None
) -> list[str]:
    """The report's sentence on the runs left out of a comparison, each named by
    ``name(row)`` (e.g. "sinc, 7 hidden, seed 8"); ``target`` says what "not converged"
    missed (None: the experiment sets none). When none is left out, the sentence says so
    with the number of runs."""
    out = [r for r in rows if r["outcome"] != FINE]
    if not out:
        met = f" and met {target}" if target else " (none diverged or collapsed)"
        return [f"All {len(rows)} runs trained{met}; none is left out."]
    what = {
        COLLAPSED: "collapsed to a constant output",
        DIVERGED: "diverged",
        NOT_CONVERGED: f"trained but missed {target}",
    }
    parts = [
        f"{len(rs)} {what[o]} ({'; '.join(merged_names([name(r) for r in rs]))})"
        for o in (COLLAPSED, DIVERGED, NOT_CONVERGED)
        if (rs := [r for r in out if r["outcome"] == o])
    ]
    return [
        f"Left out of the comparison, {len(out)} of {len(rows)} runs: " + ", ".join(parts) + "."
    ]


_SETTING = re.compile(r"([A-Za-z][\w .%-]*) ([\w.+%/-]+)")  # "lr 0.002", "seed 0/1"


def merged_names(names: Sequence[str]) -> list[str]:
    """``names`` (", "-separated settings) with those that differ in one setting only
    written as one, its values joined by "/": "MLP, seed 0" and "MLP, seed 1" become
    "MLP, seed 0/1", and "w8, wd 0, noise 0/0.1" with "w8, wd 0.01, noise 0/0.1" become
    "w8, wd 0/0.01, noise 0/0.1" (every combination of the values is a name given). In
    order of first appearance; a setting merges only if it reads "key value" without
    brackets, and a name given twice stays twice."""
    entries = [n.split(", ") for n in names]
    while True:
        width = max((len(e) for e in entries), default=0)
        before = len(entries)
        for j in reversed(range(width)):
            entries = _merge_setting(entries, j)
        if len(entries) == before:
            return [", ".join(e) for e in entries]


def _merge_setting(entries: list[list[str]], j: int) -> list[list[str]]:
    """Entries equal but for their j-th setting (same key, different values) as one."""
    groups: dict[tuple | int, list] = {}
    for i, fields in enumerate(entries):
        match = _SETTING.fullmatch(fields[j]) if j < len(fields) else None
        sig = match and (tuple(fields[:j]), match[1], tuple(fields[j + 1 :]))
        held = {v for values in groups.get(sig, []) for v in values.split("/")}
        if not sig or held & set(match[2].split("/")):  # a value twice: two runs, two names
            groups[i] = [fields]  # kept as it is
            continue
        groups.setdefault(sig, []).append(match[2])
    return [
        [*key[0], f"{key[1]} {'/'.join(values)}", *key[2]] if isinstance(key, tuple) else values[0]
        for key, values in groups.items()
    ]


def outcome_scatter(
    ax, rows: Sequence[dict], groups: Sequence, key: str, value: str, mean: str = ""
) -> None:
    """One marker per run at x = the index of its ``row[key]`` in ``groups`` (spread a
    little by seed) and y = ``row[value]``, one marker style per outcome with its n in the
    legend; runs without a finite value (diverged) are counted but not drawn. ``mean``
    ("arithmetic" or "geometric") adds the mean of each group's fine runs as a line."""
    for o in OUTCOMES:
        picked = [r for r in rows if r["outcome"] == o]
        drawn = [r for r in picked if r[value] is not None and math.isfinite(r[value])]
        x = [groups.index(r[key]) + 0.06 * (r["seed"] % 7 - 3) for r in drawn]
        y = [r[value] for r in drawn]
        ax.scatter(x, y, marker=MARKERS[o], s=24, label=f"{o} (n={len(picked)})")
    if mean:
        fine = group_rows([r for r in rows if r["outcome"] == FINE], key)
        ys = [finite(r[value] for r in fine.get((g,), [])) for g in groups]
        centre = [
            (np.exp(np.log(v).mean()) if mean == "geometric" else v.mean()) if v.size else np.nan
            for v in ys
        ]
        ax.plot(range(len(groups)), centre, color="black", lw=1.2, label="mean of fine runs")

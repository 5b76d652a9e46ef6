"""Comparisons of batch sizes: one population per batch size and budget protocol, each
trained, then probed; results read back by protocol and batch size.

A batch-size comparison is only as fair as its budget. Equal optimizer steps give a batch of
8 a few epochs and the full batch thousands; equal epochs do the reverse; either way the
trend can measure training length. ``converged`` (the default) trains every model until its
training loss (or accuracy) meets a common target, with an epoch cap, so what is held equal
is what was reached; ``epochs`` and ``steps`` are the homework's budgets, kept for contrast.
``train_config_for`` is the one place where a budget becomes a batch size's training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import spearmanr
from torch import nn

from dlprobe.config import Fraction, NonNegFloat, PosInt, one_of, require
from dlprobe.data import Dataset
from dlprobe.measure.interpolate import classification_metrics
from dlprobe.models import describe_model, mlp_param_count
from dlprobe.train import History, Population, TrainConfig

from .context import RunContext
from .experiment import fidelity_row
from .plotting import COLORS, batch_axis, mean_band, new_figure, no_data
from .stats import column, finite, group_rows, mean_std
from .sweep import check_batch_sizes, data_record, epochs_for_steps, mlp_spec, n_train_of

PROTOCOLS = ("converged", "epochs", "steps")
PROTOCOL_NAMES = {"converged": "converged", "epochs": "equal epochs", "steps": "equal steps"}
P_TREND = 0.05  # a trend counts as a rise or a fall when Spearman's p is below this
NO_TREND = "shows no clear trend"
NONE_COUNTED = "no model counted:\nevery one diverged, collapsed or missed the target"
# TrainConfig settings a budget sets for every model (a value given there would be ignored)
BUDGET_OWNED = (
    "epochs",
    "eval_every_epochs",
    "stop_below_train_loss",
    "stop_at_train_accuracy",
    "stop_below_grad_norm",
)


@dataclass(frozen=True)
class Budget:
    """How long every model of a batch-size comparison trains."""

    # converged: each model until a target below, at most max_epochs; epochs: the same
    # epochs for every batch size; steps: the same optimizer steps; all: the three, side
    # by side in the report
    protocol: one_of((*PROTOCOLS, "all"), "budget protocol") = "converged"
    train_loss: NonNegFloat = 0.01  # converged: stop once the training loss is below (0: off)
    train_accuracy: Fraction = 0.0  # converged: or once the training accuracy reaches (0: off)
    max_epochs: PosInt = 1000  # converged: the cap, in epochs, for a model that never gets there
    epochs: PosInt = 20  # epochs: passes over the training set, the same for every batch size
    steps: PosInt = 1000  # steps: optimizer steps, the same for all (rounded to whole epochs)

    def check(self) -> None:
        require(
            self.train_loss > 0 or self.train_accuracy > 0,
            "budget needs a target: set budget.train_loss and/or budget.train_accuracy",
        )

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols to run, the main one first."""
        return PROTOCOLS if self.protocol == "all" else (self.protocol,)

    def met(self, train_loss: float, train_accuracy: float) -> bool:
        """Whether final training metrics meet the target, as the trainer checks it."""
        loss_ok = self.train_loss > 0 and train_loss < self.train_loss
        return loss_ok or (self.train_accuracy > 0 and train_accuracy >= self.train_accuracy)

    def target(self) -> str:
        """The target in words, e.g. "training loss < 0.01"."""
        parts = [f"training loss < {self.train_loss:g}"] if self.train_loss > 0 else []
        if self.train_accuracy > 0:
            parts.append(f"training accuracy >= {self.train_accuracy:g}")
        return " or ".join(parts)

    def record(self) -> dict:
        """The budget as results keep it (the report's sentences are made from this)."""
        return {
            "protocols": list(self.protocols),
            "target": self.target(),
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "max_epochs": self.max_epochs,
            "epochs": self.epochs,
            "steps": self.steps,
        }


def train_config_for(
    train: TrainConfig, batch_size: int, n_train: int, budget: Budget, protocol: str
) -> TrainConfig:
    """``train`` at ``batch_size`` (0 = full batch) under one ``protocol`` of ``budget``.

    ``converged`` evaluates after every epoch, so a model stops at the first epoch that
    meets the target; the others evaluate once, at the end.
    """
    if protocol == "converged":
        return replace(
            train,
            batch_size=batch_size,
            epochs=budget.max_epochs,
            eval_every_epochs=1,
            stop_below_train_loss=budget.train_loss,
            stop_at_train_accuracy=budget.train_accuracy,
        )
    if protocol == "epochs":
        epochs = budget.epochs
    else:
        epochs = epochs_for_steps(budget.steps, batch_size, n_train)
    return replace(train, batch_size=batch_size, epochs=epochs, eval_every_epochs=epochs)


def check_budget_unset(train: TrainConfig, *owned: str) -> None:
    """Refuse settings of ``train`` that the budget (and ``owned``) set for every model."""
    for name in (*BUDGET_OWNED, *owned):
        require(
            getattr(train, name) == getattr(TrainConfig, name),
            f"train.{name} is set for every model by the budget and the batch sizes; "
            f"leave it out (change the budget settings or the batch sizes instead)",
        )


def check_sweep(
    batch_sizes: Sequence[int], dataset: str, train_subset: int, train: TrainConfig
) -> None:
    """Before anything runs: two or more distinct batch sizes that fit the training set,
    and no batch size, length or stop target in ``train`` (the sweep and budget set them)."""
    require(len(batch_sizes) >= 2, "give at least two batch sizes")
    require(len(set(batch_sizes)) == len(batch_sizes), "batch sizes must differ")
    check_batch_sizes(batch_sizes, n_train_of(dataset, train_subset))
    check_budget_unset(train, "batch_size")


def batch_order(batch_sizes: Sequence[int], n_train: int) -> list[int]:
    """The batch sizes, smallest first; 0 (the full batch) counts as ``n_train``."""
    return sorted(batch_sizes, key=lambda b: b or n_train)


def outcomes(hist: History, budget: Budget, protocol: str, n_classes: int) -> list[dict]:
    """Per model: epochs and optimizer steps used, whether it met the target, and its
    status: "diverged", "collapsed" (training accuracy at most twice chance), "not
    converged" (missed the target) or "fine". Under ``epochs`` and ``steps`` the
    target is checked on the final metrics, so every protocol says what it reached."""
    out = []
    for k, final in enumerate(hist.final_records()):
        stop = hist.stopped_at_epoch[k]
        if stop is None:
            stop = hist.diverged_at_epoch[k]
        reached = bool(hist.reached_target[k]) if protocol == "converged" else None
        if reached is None:
            reached = budget.met(final["train_loss"], final["train_accuracy"])
        if final["diverged"]:
            status = "diverged"
        elif final["train_accuracy"] <= 2 / n_classes:
            status = "collapsed"
        else:
            status = "fine" if reached else "not converged"
        out.append(
            {
                "epochs": hist.epochs[-1] if stop is None else stop,
                "steps": hist.steps_taken[k],
                "reached_target": reached,
                "status": status,
            }
        )
    return out


def train_one(
    ctx: RunContext,
    data: Dataset,
    pop: Population,
    train: TrainConfig,
    batch_size: int,
    budget: Budget,
    protocol: str,
    key: str,
) -> list[dict]:
    """Train ``pop`` at ``batch_size`` (0 = full batch) under one ``protocol`` of ``budget``
    as stage ``key``. Returns one record per model: protocol, batch size, stage, epoch cap,
    epochs and steps used, target reached, status, seed and final metrics."""
    cfg = train_config_for(train, batch_size, data.n_train, budget, protocol)
    hist = ctx.train(key, pop, data, cfg)
    head = {"protocol": protocol, "batch_size": batch_size or data.n_train}
    head |= {"full_batch": batch_size == 0, "stage": key, "epoch_cap": cfg.epochs}
    ends = outcomes(hist, budget, protocol, data.output_dim)
    return [{**head, **end, **final} for end, final in zip(ends, hist.final_records(), strict=True)]


def train_sweep(
    ctx: RunContext,
    data: Dataset,
    population: Callable[[], Population],
    train: TrainConfig,
    batch_sizes: Sequence[int],
    budget: Budget,
    probe: Callable[[nn.Module], dict],
    probe_keys: Sequence[str],
) -> Iterator[tuple[str, Population, list[dict]]]:
    """For each protocol of ``budget`` and each batch size (smallest first) train a fresh
    ``population()`` as stage ``{protocol}-bs{size}`` (``train_one``) and ``probe`` each of
    its models that did not diverge (stage ``probe-{protocol}-bs{size}``); a diverged model
    gets None for each of ``probe_keys`` (the keys ``probe`` returns).

    Every batch size and protocol starts from the same initializations (the population's
    seeds). Yields (stage key, trained population, ``train_one``'s records with the probes).
    """
    for protocol in budget.protocols:
        for b in batch_order(batch_sizes, data.n_train):
            key, pop = f"{protocol}-bs{b or data.n_train}", population()
            records = train_one(ctx, data, pop, train, b, budget, protocol, key)

            def probe_all(_ckpt, pop=pop, records=records) -> dict:
                blank = dict.fromkeys(probe_keys)  # a diverged model is not probed
                return {
                    "probes": [
                        blank if r["diverged"] else probe(pop.model(k))
                        for k, r in enumerate(records)
                    ]
                }

            probes = ctx.stage(f"probe-{key}", probe_all)["probes"]
            ctx.log(f"  {key}: {pop.size} models probed")
            yield key, pop, [{**r, **p} for r, p in zip(records, probes, strict=True)]


def split_metrics(model: nn.Module, data: Dataset) -> dict:
    """``{train_loss, train_accuracy, test_loss, test_accuracy}`` of a classifier as it is."""
    train = classification_metrics(model, data.x_train, data.y_train)
    test = classification_metrics(model, data.x_test, data.y_test)
    return {
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
    }


# -- results: rows with ``protocol``, ``batch_size``, ``seed``, ``status`` and metrics -------


def protocols_of(runs: Sequence[dict]) -> list[str]:
    """The protocols the runs were trained under, in PROTOCOLS order."""
    return [p for p in PROTOCOLS if any(r["protocol"] == p for r in runs)]


def counts(run: dict) -> bool:
    """Whether a run enters its protocol's statistics: under ``converged`` if it met the
    target; under ``epochs`` and ``steps``, as in the homework's protocol, if it trained
    (not diverged or collapsed), whatever it reached."""
    ok = ("fine",) if run["protocol"] == "converged" else ("fine", "not converged")
    return run["status"] in ok


def counted(runs: Sequence[dict], protocol: str) -> list[dict]:
    """The runs of ``protocol`` that enter its statistics (see ``counts``)."""
    return [r for r in runs if r["protocol"] == protocol and counts(r)]


def main_runs(runs: Sequence[dict]) -> list[dict]:
    """The counted runs of the main protocol (the first of ``protocols_of``)."""
    return counted(runs, protocols_of(runs)[0])


def left_out(runs: Sequence[dict]) -> list[dict]:
    """Runs that missed the target or failed, in every protocol."""
    return [r for r in runs if r["status"] != "fine"]


def batch_sizes_of(runs: Sequence[dict]) -> list[int]:
    """The batch sizes of the runs, ascending (the full batch as its size)."""
    return sorted({r["batch_size"] for r in runs})


def by_batch(runs: Sequence[dict], metric: str) -> tuple[list[int], np.ndarray]:
    """Batch sizes (ascending) and ``metric`` as an array (n_seeds, n_batch_sizes), NaN
    where a batch size has fewer runs than the largest group."""
    groups = group_rows(runs, "batch_size")
    sizes = sorted(b for (b,) in groups)
    out = np.full((max((len(g) for g in groups.values()), default=0), len(sizes)), np.nan)
    for j, b in enumerate(sizes):
        values = column(groups[(b,)], metric)
        out[: len(values), j] = values
    return sizes, out


def at_batch(runs: Sequence[dict], metric: str, batch: int) -> tuple[float, float]:
    """Mean and standard deviation of ``metric`` over the seeds of one batch size."""
    return mean_std(r[metric] for r in runs if r["batch_size"] == batch)


def trend(runs: Sequence[dict], metric: str, x: str = "batch_size") -> tuple[float, float, int]:
    """Spearman's rho of ``metric`` with log ``x`` over the runs where both are finite, its
    two-sided p-value, and n (NaN rho and p below 3 pairs or with a constant side)."""
    pairs = [
        (math.log(r[x]), r[metric])
        for r in runs
        if r[metric] is not None and math.isfinite(r[metric]) and r[x] > 0
    ]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return math.nan, math.nan, len(pairs)
    res = spearmanr(*zip(*pairs, strict=True))
    return float(res.statistic), float(res.pvalue), len(pairs)


def direction(rho: float, p: float) -> str:
    """The direction of a trend: rises, falls, or "shows no clear trend" (p >= P_TREND)."""
    if not math.isfinite(rho) or not p < P_TREND:
        return NO_TREND
    return "rises" if rho > 0 else "falls"


def trend_text(runs: Sequence[dict], metric: str) -> str:
    """``trend`` in words: "ρ = +0.52, p = 0.01, n = 24"."""
    rho, p, n = trend(runs, metric)
    return f"ρ = {rho:+.2f}, p = {p:.2g}, n = {n}"


def batch_summary(runs: Sequence[dict], means: Sequence[str], trends: Sequence[str]) -> dict:
    """Headline numbers per protocol, over its counted runs: the mean of each of ``means``
    at the smallest and the largest batch size, and the trend of each of ``trends``."""
    out: dict = {"batch sizes": batch_sizes_of(runs)}
    for protocol in protocols_of(runs):
        rs = counted(runs, protocol)
        out[f"{protocol}: runs counted / trained"] = [
            len(rs),
            sum(r["protocol"] == protocol for r in runs),
        ]
        if not rs:
            continue
        lo, hi = batch_sizes_of(rs)[0], batch_sizes_of(rs)[-1]
        for metric in means:
            out[f"{protocol}: {metric}: mean at batch {lo} / {hi}"] = [
                at_batch(rs, metric, lo)[0],
                at_batch(rs, metric, hi)[0],
            ]
        for metric in trends:
            out[f"{protocol}: {metric}: Spearman r with log batch size"] = trend(rs, metric)[0]
    return out


def batch_panel(
    ax, runs: Sequence[dict], n_train: int, metrics: dict, log: bool = False, first_color: int = 0
) -> None:
    """Each of ``metrics`` (result field -> legend label) against batch size on ``ax``:
    the mean over seeds as a line (geometric with ``log``) and the min-max as a band; with
    no runs, a panel that says none was counted."""
    if not runs:
        no_data(ax, NONE_COUNTED)
        return
    for i, (metric, label) in enumerate(metrics.items()):
        sizes, values = by_batch(runs, metric)  # (n_seeds, n_sizes)
        mean_band(ax, sizes, values, label, COLORS[first_color + i], log=log)
    if log:
        ax.set_yscale("log")
    batch_axis(ax, batch_sizes_of(runs), n_train)


# -- the report: budget, what was reached, who is left out, trends per protocol -------------


def protocol_label(protocol: str, budget: dict) -> str:
    """A protocol with its numbers, e.g. "equal steps (1000 per model)"."""
    return {
        "converged": f"converged ({budget['target']}, at most {budget['max_epochs']} epochs)",
        "epochs": f"equal epochs ({budget['epochs']} per model)",
        "steps": f"equal steps ({budget['steps']} per model)",
    }[protocol]


def held_equal_lines(results: dict) -> list[str]:
    """What each protocol that ran holds equal, and what it lets vary (computed ranges)."""
    budget, runs = results["budget"], results["runs"]
    lines = []
    for protocol in protocols_of(runs):
        rs = [r for r in runs if r["protocol"] == protocol]
        e, s = column(rs, "epochs"), column(rs, "steps")
        loss = column([r for r in rs if r["status"] != "diverged"], "train_loss")
        held = {
            "converged": f"the training loss reached ({budget['target']}, checked after every "
            f"epoch, at most {budget['max_epochs']} epochs)",
            "epochs": f"the passes over the data ({budget['epochs']} epochs)",
            "steps": f"the optimizer steps ({budget['steps']}, rounded to whole epochs)",
        }[protocol]
        reached = (
            f"reached training losses {_range(loss, '.2g')}"
            if finite(loss).size
            else "no model reached a finite training loss"
        )
        lines.append(
            f"{PROTOCOL_NAMES[protocol].capitalize()} holds equal {held}; it used {span(e)} "
            f"epochs and {span(s)} optimizer steps and {reached}; "
            f"{sum(r['status'] == 'fine' for r in rs)} of {len(rs)} models met the target."
        )
        rho, p, n = trend(counted(runs, protocol), "train_loss")
        if protocol == "converged" and n:  # what the target leaves unequal
            lines[-1] += (
                f" The loss at the stop {direction(rho, p)} with batch size (ρ = {rho:+.2f}, "
                f"p = {p:.2g}, n = {n})"
                + (
                    ": checked once per epoch, small batches take many steps between checks "
                    "and stop further below the target."
                    if direction(rho, p) == "rises"
                    else "."
                )
            )
    return lines


def left_out_lines(runs: Sequence[dict], key: str = "batch_size") -> list[str]:
    """One sentence per protocol naming the runs that missed the target or failed, grouped
    by ``key`` and status, with their seeds and what they reached, and saying whether they
    are left out of the protocol's statistics (see ``counts``)."""
    lines = []
    for protocol in protocols_of(runs):
        out = [r for r in left_out(runs) if r["protocol"] == protocol]
        if not out:
            continue
        named = "; ".join(
            f"{key.replace('_', ' ')} {value} {status}: seed(s) "
            f"{', '.join(str(r['seed']) for r in rs)} ("
            + (
                ""
                if status == "diverged"  # its final metrics are not numbers
                else f"training loss {_range(column(rs, 'train_loss'), '.3g')}, accuracy "
                f"{_range(column(rs, 'train_accuracy'), '.3f')}, "
            )
            + f"{span(column(rs, 'epochs'))} epochs, {span(column(rs, 'steps'))} steps)"
            for (value, status), rs in group_rows(out, key, "status").items()
        )
        missed = sum(r["status"] == "not converged" for r in out)
        failed = f"{len(out) - missed} diverged or collapsed are left out"
        what = (
            "all are left out of its statistics"
            if protocol == "converged"
            else failed
            if not missed
            else f"the {missed} not converged are counted, as that protocol would"
            + f"; {failed}" * (missed < len(out))
        )
        lines.append(
            f"{PROTOCOL_NAMES[protocol].capitalize()}: {len(out)} of "
            f"{sum(r['protocol'] == protocol for r in runs)} models missed the target or "
            f"failed ({what}): {named}."
        )
    return lines


def _range(values: np.ndarray, fmt: str) -> str:
    """Finite values as "lo-hi" in ``fmt``, one number when equal, "none" when empty."""
    values = finite(values)
    if not values.size:
        return "none"
    lo, hi = values.min(), values.max()
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def span(values: np.ndarray) -> str:
    """Whole numbers as "lo-hi", one number when they are all equal, "none" when empty."""
    values = finite(values)
    if not values.size:
        return "none"
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def reached_table(runs: Sequence[dict], *by: str) -> tuple[str, list[dict]]:
    """The Notes table of what every protocol and batch size (or ``by``) reached, as means
    over the seeds that did not diverge; the gradient norm where runs have one."""
    rows, by = [], by or ("batch_size",)
    for key, rs in group_rows(runs, "protocol", *by).items():
        ok = [r for r in rs if r["status"] != "diverged"]
        rows.append(
            {
                "protocol": PROTOCOL_NAMES[key[0]],
                **{k.replace("_", " "): v for k, v in zip(by, key[1:], strict=True)},
                "met target": f"{sum(r['status'] == 'fine' for r in rs)}/{len(rs)}",
                "epochs": span(column(rs, "epochs")),
                "optimizer steps": span(column(rs, "steps")),
                "train loss": mean_std(r["train_loss"] for r in ok)[0],
                "train accuracy": mean_std(r["train_accuracy"] for r in ok)[0],
                "test accuracy": mean_std(r["test_accuracy"] for r in ok)[0],
            }
        )
        if "grad_norm" in rs[0]:
            rows[-1]["gradient norm"] = mean_std(r["grad_norm"] for r in ok)[0]
    grad = "; gradient norm where the sharpness was measured" * ("gradient norm" in rows[0])
    return f"What each {by[-1].replace('_', ' ')} reached (mean over seeds{grad})", rows


def protocol_lines(runs: Sequence[dict], metrics: dict) -> list[str]:
    """Per metric (field -> name): its trend with log batch size under every protocol that
    ran and, when they disagree, a sentence that says so and what the others follow."""
    protocols, lines = protocols_of(runs), []
    if len(protocols) < 2:
        return [f"Only {PROTOCOL_NAMES[protocols[0]]} ran: `--protocol all` adds the others."]
    for metric, name in metrics.items():
        said = {}
        for protocol in protocols:
            rs = counted(runs, protocol)
            rho, p, _ = trend(rs, metric)
            said[protocol] = direction(rho, p)
        parts = [
            f"under {PROTOCOL_NAMES[p]} it {said[p]} ({trend_text(counted(runs, p), metric)})"
            for p in protocols
        ]
        agree = len(set(said.values())) == 1
        line = f"With batch size, {name}: {'; '.join(parts)}."
        if not agree:
            line += " The protocols disagree. " + " ".join(
                _follows(runs, p, metric) for p in protocols if p != "converged"
            )
        else:
            line += f" The protocols agree: it {said[protocols[0]]} under each."
        lines.append(line)
    return lines


def _follows(runs: Sequence[dict], protocol: str, metric: str) -> str:
    """Whether the trend under ``protocol`` follows what that protocol lets vary: the
    training length of each batch size and the training loss the models reached."""
    rs = counted(runs, protocol)
    length = "epochs" if protocol == "steps" else "steps"
    rho_len, _, _ = trend(rs, length)
    rho_loss, p_loss, _ = trend(rs, "train_loss")
    rho_m, p_m, n = spearman_p(column(rs, "train_loss"), column(rs, metric))
    follows = p_loss < P_TREND and p_m < P_TREND
    return (
        f"Under {PROTOCOL_NAMES[protocol]} the {length} trained change with batch size "
        f"(ρ = {rho_len:+.2f}), the training loss reached {direction(rho_loss, p_loss)} "
        f"with it (ρ = {rho_loss:+.2f}, p = {p_loss:.2g}) and the measure tracks that loss "
        f"(ρ = {rho_m:+.2f}, p = {p_m:.2g}, n = {n}): "
        + (
            "its trend there follows training length."
            if follows
            else "the loss reached does not account for its trend there."
        )
    )


def spearman_p(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Spearman's rho of two columns over the pairs where both are finite, its p-value, n."""
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or len(set(x[keep])) < 2 or len(set(y[keep])) < 2:
        return math.nan, math.nan, int(keep.sum())
    res = spearmanr(x[keep], y[keep])
    return float(res.statistic), float(res.pvalue), int(keep.sum())


def main_label(results: dict) -> str:
    """The main protocol in a few words, for figure titles."""
    protocol = protocols_of(results["runs"])[0]
    if protocol == "converged":
        return f"converged ({results['budget']['target']})"
    return PROTOCOL_NAMES[protocol]


def critical_point_line(runs: list[dict], epsilon: float, slopes: dict | None = None) -> str:
    """The gradient norm where the Hessian was measured, against the curvature term, and
    how far the maxima in ``slopes`` (field -> name) follow that gradient norm."""
    g, h = column(runs, "grad_norm"), column(runs, "hessian_norm")
    ratio = 2 * g / (h * epsilon)  # first-order rise ‖g‖ε over second-order ½‖H‖ε²
    line = (
        f"The sharpness was measured at gradient norms {_range(g, '.2g')} (median "
        f"{np.nanmedian(g):.2g})"
    )
    if np.isfinite(h).any():
        line += (
            f"; in the ε = {epsilon:g} ball the first-order loss rise ‖g‖ε is "
            f"{np.nanmedian(ratio):.3g} times (median) the second-order ½‖H‖ε² that the Hessian "
            "estimate keeps: "
            + (
                "these are not critical points at that scale, so the Hessian sharpness is the "
                "curvature there, not the loss rise"
                if np.nanmedian(ratio) > 1
                else "the points are close enough to critical for the estimate"
            )
        )
    said = {name: spearman_p(g, column(runs, m)) for m, name in (slopes or {}).items()}
    if said:
        line += "; " + ", ".join(
            f"{name} tracks the gradient norm at ρ = {r:+.2f} (p = {p:.2g})"
            for name, (r, p, _) in said.items()
        )
        follows = any(direction(r, p) == "rises" for r, p, _ in said.values())
        line += (
            ": at this ε these maxima measure mostly the slope (the first-order term), not "
            "the curvature"
            if follows
            else ": the maxima do not follow the slope here"
        )
    return line + "."


def intro_lines(results: dict, what: str) -> list[str]:
    """The report's first lines: batch sizes, seeds, ``what`` was trained, the main
    protocol's n, what each protocol holds equal, and the runs that missed the target."""
    runs, k = results["runs"], len(results["seeds"])
    sizes, main = batch_sizes_of(runs), protocols_of(runs)[0]
    return [
        f"{len(sizes)} batch sizes ({', '.join(map(str, sizes))}), {k} seed(s) each; {what} on "
        f"{results['dataset']['name']}; statistics under {PROTOCOL_NAMES[main]} use n = "
        f"{len(main_runs(runs))} models.",
        *held_equal_lines(results),
        *left_out_lines(runs),
    ]


def main_trend_lines(runs: Sequence[dict], names: dict, protocol: str) -> list[str]:
    """Per measure (field -> name): its trend with log batch size over ``runs`` (counted
    runs of ``protocol``) and its mean ± sd at the smallest and largest batch size."""
    lo, hi = batch_sizes_of(runs)[0], batch_sizes_of(runs)[-1]
    lines = []
    for metric, name in names.items():
        (m_lo, s_lo), (m_hi, s_hi) = at_batch(runs, metric, lo), at_batch(runs, metric, hi)
        lines.append(
            f"{PROTOCOL_NAMES[protocol].capitalize()}: as batch size grows, {name} "
            f"{direction(*trend(runs, metric)[:2])} ({trend_text(runs, metric)}): {m_lo:.3g} "
            f"± {s_lo:.2g} at batch {lo} vs {m_hi:.3g} ± {s_hi:.2g} at batch {hi} (mean ± sd)"
        )
        if protocol == "converged":  # the loss at the stop is the target's residual confound
            rho, p, _ = spearman_p(column(runs, "train_loss"), column(runs, metric))
            lines[-1] += f"; against the training loss at the stop ρ = {rho:+.2f} (p = {p:.2g})"
        lines[-1] += "."
    return lines


def trend_row(
    results: dict, metric: str, claim: str, reference: str, expected: str, extra: str = ""
) -> dict:
    """The fidelity row of a reference trend with batch size (``expected``: "rises" or
    "falls"), measured under the main protocol (``extra`` is appended to the measurement);
    when it differs, which protocols show it."""
    all_runs = results["runs"]
    runs = main_runs(all_runs)
    rho, p, n = trend(runs, metric)
    said = direction(rho, p)
    others = [
        PROTOCOL_NAMES[q]
        for q in protocols_of(all_runs)[1:]
        if direction(*trend(counted(all_runs, q), metric)[:2]) == expected
    ]
    lo, hi = batch_sizes_of(runs)[0], batch_sizes_of(runs)[-1]
    (m_lo, _), (m_hi, _) = at_batch(runs, metric, lo), at_batch(runs, metric, hi)
    return fidelity_row(
        claim,
        reference,
        f"{m_lo:.3g} at batch {lo} → {m_hi:.3g} at batch {hi}; ρ = {rho:+.2f} (p = {p:.2g}, "
        f"n = {n}){extra}",
        said == expected,
        f"under {main_label(results)} on {results['dataset']['name']} it {said}; "
        + (
            f"it {expected} under {' and '.join(others)}, where batch sizes trained unequally"
            if others
            else f"no protocol run here shows it {expected}"
        ),
    )


def gap_line(runs: Sequence[dict], metric: str, name: str) -> str:
    """How ``metric`` tracks the generalization gap (test minus training loss) across the
    runs, and whether batch size, which moves both, confounds it."""
    gap = column(runs, "test_loss") - column(runs, "train_loss")  # (n_runs,)
    rho, p, n = spearman_p(column(runs, metric), gap)
    rho_b, p_b, _ = spearman_p(np.log(column(runs, "batch_size")), gap)
    rho_m, p_m, _ = trend(runs, metric)
    both = direction(rho_b, p_b) != NO_TREND and direction(rho_m, p_m) != NO_TREND
    return (
        f"Across these n = {n} models {name} tracks the generalization gap (test minus "
        f"training loss) at ρ = {rho:+.2f} (p = {p:.2g}); "
        + (
            f"confound: both vary with batch size (gap ρ = {rho_b:+.2f}, measure ρ = "
            f"{rho_m:+.2f}), so this does not separate the measure from batch size."
            if both
            else f"batch size does not move both (gap ρ = {rho_b:+.2f}, p = {p_b:.2g}; "
            f"measure ρ = {rho_m:+.2f}, p = {p_m:.2g})."
        )
    )


def protocol_caption(measures: str) -> str:
    """The caption of ``protocol_figure`` for these measures (in words)."""
    return (
        f"one column per budget protocol that ran: {measures} and the training loss each "
        "model reached, against batch size; line and band: counted models; crosses: models "
        "that missed the target (left out under converged, counted under equal epochs or "
        "steps); dashed: the target"
    )


def standin_row(results: dict, runs: Sequence[dict]) -> dict:
    """The fidelity row of the data set: do clean-label models generalize as on MNIST?"""
    acc = finite(r["test_accuracy"] for r in runs)
    return fidelity_row(
        "the stand-in is in the homework's regime (clean labels generalize)",
        "MNIST MLPs: about 0.97-0.98 test accuracy",
        f"{results['dataset']['name']}: test accuracy {acc.min():.3f}-{acc.max():.3f} over "
        f"{acc.size} models"
        if acc.size
        else "no model counted",
        bool(acc.size and acc.min() >= 0.9),
        "some models stay below 0.9 test accuracy" if acc.size else "no model met the target",
    )


def batch_grid(results: dict, panels: list[tuple[str, dict, bool]], ncols: int, title: str):
    """Panels (title, {field: legend label}, log axis) against batch size, main runs."""
    runs, n_train = main_runs(results["runs"]), results["dataset"]["n_train"]
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.4, height=3.6, squeeze=False)
    for i, (ax, (name, metrics, log)) in enumerate(zip(axes.flat, panels, strict=False)):
        batch_panel(ax, runs, n_train, metrics, log=log, first_color=i * (len(metrics) == 1))
        ax.set_title(name, fontsize=9)
        if runs:
            ax.legend(fontsize=7)
    fig.suptitle(f"{title}; {main_label(results)}; n={len(runs)} models")
    fig.tight_layout()
    return fig


def protocol_figure(results: dict, rows: dict, title: str):
    """The trend under every protocol that ran, side by side: one column per protocol, one
    row per measure (``rows``: field -> (label, log axis)) and a last row with the training
    loss each model reached. Counted runs: mean line and min-max band; runs that missed
    the target: crosses (left out under ``converged``, counted under the others)."""
    runs, n_train, budget = results["runs"], results["dataset"]["n_train"], results["budget"]
    protocols = protocols_of(runs)
    panels = {**rows, "train_loss": ("training loss reached", True)}
    fig, axes = new_figure(
        ncols=len(protocols), nrows=len(panels), width=4.3 if len(protocols) > 1 else 6.5,
        height=2.9, squeeze=False, sharey="row", layout="constrained",
    )  # fmt: skip
    for j, protocol in enumerate(protocols):
        rs, own = counted(runs, protocol), [r for r in runs if r["protocol"] == protocol]
        missed = [r for r in own if r["status"] == "not converged"]
        for i, (metric, (label, log)) in enumerate(panels.items()):
            ax = axes[i, j]
            ax.set_title(
                f"{PROTOCOL_NAMES[protocol]}: {trend_text(rs, metric)}"
                if metric != "train_loss"
                else protocol_label(protocol, budget),
                fontsize=8,
            )
            ax.set_ylabel(label if j == 0 else "", fontsize=8)
            if rs:
                batch_panel(ax, rs, n_train, {metric: "counted, mean"}, log=log, first_color=i)
            if missed:
                fate = "left out" if protocol == "converged" else "counted"
                ax.scatter(
                    column(missed, "batch_size"), column(missed, metric), marker="x",
                    color="tab:red", label=f"missed target, {fate} (n={len(missed)})", zorder=3,
                )  # fmt: skip
            if not rs and not missed:
                no_data(ax, NONE_COUNTED)
                continue
            if metric == "train_loss" and budget["train_loss"] > 0:
                ax.axhline(budget["train_loss"], color="gray", ls="--", lw=1, label="target")
            batch_axis(ax, batch_sizes_of(own), n_train)
            if i < len(panels) - 1:
                ax.set_xlabel("")
            if log:
                ax.set_yscale("log")
            ax.legend(fontsize=6)
    seeds = len(results["seeds"])
    fig.suptitle(f"{title} ({seeds} seed(s) per batch size; ρ: Spearman with log batch size)")
    if len(protocols) == 1:
        fig.supxlabel("only this protocol ran: --protocol all adds the others", fontsize=8)
    return fig


# -- model, data and training length for the report ----------------------------------------


def model_and_data(data: Dataset, hidden: Sequence[int], activation: str) -> dict:
    """Results entries ``model`` (an MLP spec), ``model_params`` and ``dataset``."""
    spec = mlp_spec(data, hidden, activation)
    return {
        "model": spec,
        "model_params": mlp_param_count(spec["widths"], activation),
        "dataset": data_record(data),
    }


def model_and_data_table(results: dict) -> tuple[str, list[dict]]:
    """The Notes table of the model and the data, from ``model_and_data`` entries."""
    d = results["dataset"]
    return (
        "Model and data",
        [
            {
                "model": describe_model(results["model"]),
                "parameters": results["model_params"],
                "dataset": d["name"],
                "training examples": d["n_train"],
                "test examples": d["n_test"],
            }
        ],
    )

"""Budgets and training of a batch-size comparison: one population per batch size and
protocol, trained under its budget, then probed (``train_config_for`` is the one place
where a budget becomes a batch size's training)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from torch import nn

from dlprobe.config import Fraction, NonNegFloat, PosInt, one_of, require
from dlprobe.data import Dataset
from dlprobe.measure.interpolate import classification_metrics
from dlprobe.models import mlp_param_count
from dlprobe.train import History, Population, TrainConfig

from ..context import RunContext
from ..sweep import check_batch_sizes, data_record, epochs_for_steps, mlp_spec, n_train_of

PROTOCOLS = ("converged", "epochs", "steps")


PROTOCOL_NAMES = {"converged": "converged", "epochs": "equal epochs", "steps": "equal steps"}


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


def model_and_data(data: Dataset, hidden: Sequence[int], activation: str) -> dict:
    """Results entries ``model`` (an MLP spec), ``model_params`` and ``dataset``."""
    spec = mlp_spec(data, hidden, activation)
    return {
        "model": spec,
        "model_params": mlp_param_count(spec["widths"], activation),
        "dataset": data_record(data),
    }

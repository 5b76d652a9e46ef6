"""Training loop of a population: minibatches as index tensors, one summed objective."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch.utils.data import Dataset as TorchDataset

from dlprobe import DlprobeError
from dlprobe.data.dataset import Dataset
from dlprobe.data.torch_datasets import from_torch_dataset
from dlprobe.train.backprop import SequentialBackprop
from dlprobe.train.checkpoint import Checkpoint
from dlprobe.train.config import TrainConfig, lr_factor, make_optimizer
from dlprobe.train.evaluation import (
    LossFn,
    default_loss,
    loss_and_correct,
    own_grad_norms,
    per_model_l1,
    per_model_losses,
    per_model_sq_norms,
    train_loss_and_correct,
)
from dlprobe.train.freezer import Freezer
from dlprobe.train.history import (
    LOSS_ABOVE_BLOWUP,
    NON_FINITE_LOSS,
    NON_FINITE_PARAMETERS,
    History,
)
from dlprobe.train.noise import gradient_noise
from dlprobe.train.optim import FusedAdamStep, PerModelOptimizer
from dlprobe.train.per_model import ModelData, PerModel
from dlprobe.train.population import Population

Progress = Callable[[int, int, dict], None]  # (epochs done, total epochs, latest metrics)


# Version of the state train_population checkpoints; a checkpoint of another is refused.
CHECKPOINT_FORMAT = 2


def train_population(
    pop: Population,
    data: Dataset | TorchDataset,
    cfg: TrainConfig,
    loss_fn: LossFn | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    test_data: TorchDataset | None = None,
    per_model: PerModel | None = None,
    reference: bool = False,
) -> History:
    """Train every model of ``pop`` on ``data`` and return its history.

    Model k draws its minibatch order from a generator seeded with its own seed. Before
    training every model's train loss is evaluated (``history.initial_train_loss``, the
    reference of ``cfg.blowup_loss_factor``). A model that diverges (see ``History``) is
    frozen at its last finite parameters; one that meets a stop target of ``cfg`` is frozen
    where it is; the others go on, and training ends when every model is frozen. Random
    layers (dropout) draw from torch's global generator on the population's device, as in
    any PyTorch loop, so they advance it (a resumed training restores it from the
    checkpoint); models without random layers leave it untouched.

    Args:
        pop: the models, trained in place.
        data: a dlprobe ``Dataset``, or a map-style torch Dataset of ``(x, y)`` items,
            which is loaded whole into memory on ``pop.device`` once (see
            ``dlprobe.data.from_torch_dataset``); an IterableDataset is refused.
        cfg: how to train.
        loss_fn: per-model loss of (outputs, targets); default cross-entropy for
            classification, mean squared error for regression.
        checkpoint: where to save the state every ``checkpoint.every_epochs`` epochs; a
            later call with it resumes from the saved state (with the same ``per_model``).
        progress: called after every evaluation with (epochs done, epochs, mean metrics).
        test_data: with a torch Dataset as ``data``, its test split; without it, the
            models are evaluated on the training split only (the test metrics stay empty).
        per_model: settings that differ between models (learning rate, weight decay,
            momentum, label noise, training subset); see :class:`PerModel`.
        reference: take the reference road: autograd's backward pass and torch.optim's own
            ``step``. The default road writes the backward pass of plain Sequential MLPs
            out (``SequentialBackprop``) and calls fused Adam's kernel directly
            (``FusedAdamStep``); tests check that both roads give the same numbers bit for
            bit, and ``dlprobe bench`` times both.

    Returns:
        The :class:`History`.

    Raises:
        DlprobeError: an invalid ``cfg`` or ``per_model``, data that cannot be loaded, or a
            checkpoint that is not one of this version's.
    """
    data = _as_dataset(data, test_data, pop.device)
    if per_model is not None:
        per_model.check(pop.size, cfg.optimizer, data)
    md = ModelData(data, per_model, pop.seeds)
    cfg.validate(md.n)
    if cfg.stop_at_train_accuracy > 0 and data.task != "classification":
        raise DlprobeError(
            f"stop_at_train_accuracy needs integer class labels; {data.name} is a "
            f"{data.task} dataset: use stop_below_train_loss"
        )
    if cfg.keep_best_test_loss and not data.n_test:
        raise DlprobeError("keep_best_test_loss needs a test split to choose the best epoch by")
    loss_fn = loss_fn or default_loss(data)
    device, n, K = pop.device, md.n, pop.size
    batch, steps = cfg.batch_size_for(n), cfg.steps_per_epoch(n)
    params = pop.parameters()
    optimizer = _optimizer(pop, cfg, per_model, lean=not reference)
    # the written-out backward pass where it covers this training, else autograd's
    backprop = None
    if not reference and cfg.objective == "loss" and cfg.l1_penalty == 0:
        backprop = SequentialBackprop.for_training(pop, loss_fn, md.x, md.y)
    gens = [torch.Generator().manual_seed(s) for s in pop.seeds]
    freezer = Freezer(pop)
    noise = gradient_noise(pop.seeds, cfg)
    hist = History(
        seeds=list(pop.seeds),
        diverged_at_epoch=[None] * K,
        diverged_reason=[None] * K,
        stopped_at_epoch=[None] * K,
        reached_target=[False if cfg.has_stop_target else None] * K,
        steps_taken=[0] * K,
        best_epoch=[None] * K if cfg.keep_best_test_loss else [],
    )
    done = 0  # epochs completed
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        hist, done = _resume(saved, checkpoint, pop, optimizer, gens, freezer)
        if noise is not None:
            noise.load(saved["grad_noise"])
    else:
        _evaluate_initial(hist, pop, md, loss_fn, freezer)
        if cfg.snapshot_every_epochs:
            hist.snapshot_epochs.append(0)
            hist.snapshots.append(pop.flat_params().cpu())

    t0 = time.perf_counter() - hist.seconds
    pop.train(True)
    while done < cfg.epochs and freezer.any_active:
        epoch = done
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # (K, n)
        for s in range(steps):
            if not freezer.any_active:  # every model diverged in this epoch
                break
            _set_lr(optimizer, cfg, lr_factor(cfg, epoch + s / steps))
            x, y = md.batch(order[:, s * batch : (s + 1) * batch])  # (K, b, ...)
            if backprop is not None:
                losses = backprop.losses(x, y)  # (K,)
            else:
                losses = per_model_losses(loss_fn, pop.forward(x), y)  # (K,)
            if not torch.isfinite(losses.detach()).all():  # one check per step, then per model
                for k in torch.nonzero(~torch.isfinite(losses.detach()).cpu() & freezer.active):
                    _diverge(hist, freezer, int(k), epoch, NON_FINITE_LOSS)
                    hist.steps_taken[int(k)] += s  # steps 0..s-1 of this epoch updated it
            all_active = freezer.all_active
            if backprop is not None:  # frozen models add nothing (their weight is 0)
                backprop.backward(freezer.weights)
            else:
                optimizer.zero_grad(set_to_none=False)
                if cfg.objective == "grad_norm_sq":
                    grads = torch.autograd.grad(losses.sum(), params, create_graph=True)
                    objective = per_model_sq_norms(pop, params, grads)
                else:
                    objective = losses
                if cfg.l1_penalty > 0:  # in the objective only: recorded losses are the data's
                    objective = objective + cfg.l1_penalty * per_model_l1(pop)
                if not all_active:  # frozen models add nothing (not even NaN)
                    objective = torch.where(freezer.active_on_device, objective, 0.0)
                objective.sum().backward()
            if not all_active:  # a frozen model's NaN gradient must not reach
                freezer.mask_grads()  # the optimizer state
                for p in params:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            if cfg.record_steps:
                dead = _diverged_mask(hist)
                hist.step_loss.append(losses.detach().cpu().masked_fill(dead, math.nan).tolist())
                norms = pop.grad_norms().cpu().masked_fill(dead, math.nan)
                hist.step_grad_norm.append(norms.tolist())
            if noise is not None:  # after the step records: they show the loss's gradient
                noise.add(pop.per_model_grads(), epoch * steps + s, freezer.active)
            optimizer.step()
            freezer.restore()
        for k in torch.nonzero(freezer.active).flatten().tolist():
            hist.steps_taken[k] += steps

        done = epoch + 1
        if done % cfg.eval_every_epochs == 0 or done == cfg.epochs or not freezer.any_active:
            _evaluate_into(hist, pop, md, data, loss_fn, cfg, freezer, done)
            if progress:
                progress(done, cfg.epochs, _latest(hist))
        if cfg.snapshot_every_epochs and done % cfg.snapshot_every_epochs == 0:
            hist.snapshot_epochs.append(done)
            hist.snapshots.append(pop.flat_params().cpu())
        hist.seconds = time.perf_counter() - t0
        if checkpoint and (done % checkpoint.every_epochs == 0) and done < cfg.epochs:
            checkpoint.save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": done,
                    "population": pop.state(),
                    "optimizer": optimizer.state_dict(),
                    "generators": [g.get_state() for g in gens],
                    "torch_rng": torch.get_rng_state(),  # dropout draws from these two
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "freezer": freezer.state(),
                    "grad_noise": None if noise is None else noise.state(),
                    "history": hist.state(),
                }
            )
    if not hist.epochs:  # every model diverged before training: still one row, at epoch 0
        _evaluate_into(hist, pop, md, data, loss_fn, cfg, freezer, done)
    optimizer.zero_grad(set_to_none=True)
    return hist


def _optimizer(pop: Population, cfg: TrainConfig, per_model: PerModel | None, lean: bool):
    """torch.optim's optimizer of ``cfg`` over the stacked parameters (with ``lean``, fused
    Adam stepped by ``FusedAdamStep``), or, where hyperparameters differ between models, a
    PerModelOptimizer."""
    if per_model is None or not per_model.sets_optimizer:
        optimizer = make_optimizer(pop.parameters(), cfg)
        if lean and isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"]:
            return FusedAdamStep(optimizer)
        return optimizer
    if pop.batched:
        params, models = pop.parameters(), [None] * len(pop.parameters())
    else:
        per = pop.per_model_parameters()
        params = [p for ps in per for p in ps]
        models = [k for k, ps in enumerate(per) for _ in ps]

    def values(name: str) -> list[float]:  # the model's own, else the config's for all
        own = getattr(per_model, name)
        return [getattr(cfg, name)] * pop.size if own is None else [float(v) for v in own]

    return PerModelOptimizer(
        cfg.optimizer,
        params,
        models,
        lr=values("lr"),
        weight_decay=values("weight_decay"),
        momentum=values("momentum"),
    )


def _set_lr(optimizer, cfg: TrainConfig, factor: float) -> None:
    """The learning rate of the schedule at this step: ``factor`` times the peak."""
    if isinstance(optimizer, PerModelOptimizer):
        optimizer.lr_factor = factor
    else:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * factor


def _resume(saved: dict, checkpoint: Checkpoint, pop, optimizer, gens, freezer):
    """Load a checkpoint's state into the training's objects; returns (history, epoch)."""
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise DlprobeError(
            f"{checkpoint.path} was saved by another version of dlprobe's trainer; delete "
            "it (or the run's checkpoints/ folder) to retrain from scratch"
        )
    pop.load_state(saved["population"])
    optimizer.load_state_dict(saved["optimizer"])
    for g, s in zip(gens, saved["generators"], strict=True):
        g.set_state(s)
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], pop.device)
    freezer.load(saved["freezer"])
    return History.from_state(saved["history"]), saved["epoch"]


def _as_dataset(data, test_data, device: torch.device) -> Dataset:
    if isinstance(data, Dataset):
        if test_data is not None:
            raise DlprobeError(
                "test_data is for a torch Dataset; a dlprobe Dataset carries its own test split"
            )
        return data
    return from_torch_dataset(data, test_data, device=device)


def _diverged_mask(hist: History) -> torch.Tensor:
    """(K,) bool on the CPU: which models have diverged."""
    return torch.tensor([e is not None for e in hist.diverged_at_epoch], dtype=torch.bool)


def _diverge(hist: History, freezer: Freezer, k: int, epoch: int, reason: str) -> None:
    hist.diverged_at_epoch[k], hist.diverged_reason[k] = epoch, reason
    freezer.freeze(k)


def _finite_params(pop: Population) -> torch.Tensor:
    """(K,) bool on the CPU: whether all parameters of each model are finite."""
    if pop.batched and pop.params:  # per stacked parameter, not per model and parameter
        finite = [torch.isfinite(p.detach()).flatten(1).all(1) for p in pop.params.values()]
        return torch.stack(finite).all(0).cpu()
    return torch.isfinite(pop.flat_params()).all(1).cpu()


def _evaluate_initial(hist, pop, md: ModelData, loss_fn, freezer) -> None:
    """Train loss before training; a model with a NaN/inf loss or parameter diverged at 0."""
    loss, _ = train_loss_and_correct(pop, md, loss_fn)
    loss, finite = loss.cpu(), _finite_params(pop)
    freezer.remember_finite(finite)
    for k in range(pop.size):
        if not torch.isfinite(loss[k]):
            _diverge(hist, freezer, k, 0, NON_FINITE_LOSS)
        elif not finite[k]:
            _diverge(hist, freezer, k, 0, NON_FINITE_PARAMETERS)
    hist.initial_train_loss = loss.masked_fill(_diverged_mask(hist), math.nan).tolist()
    freezer.restore()


def _evaluate_into(hist, pop, md: ModelData, data, loss_fn, cfg, freezer, epoch) -> None:
    """One history row after ``epoch`` epochs, with the divergence check and stop targets."""
    n = md.n
    train_loss, train_correct = train_loss_and_correct(pop, md, loss_fn)
    train_loss, finite = train_loss.cpu(), _finite_params(pop)
    initial = torch.tensor(hist.initial_train_loss)
    blown = (initial > 0) & (train_loss > cfg.blowup_loss_factor * initial)
    for k in torch.nonzero(freezer.active).flatten().tolist():
        if not torch.isfinite(train_loss[k]):
            _diverge(hist, freezer, k, epoch, NON_FINITE_LOSS)
        elif not finite[k]:
            _diverge(hist, freezer, k, epoch, NON_FINITE_PARAMETERS)
        elif cfg.blowup_loss_factor > 0 and blown[k]:
            _diverge(hist, freezer, k, epoch, LOSS_ABOVE_BLOWUP)
    freezer.restore()  # a model whose parameters overflowed goes back to finite ones
    freezer.remember_finite(finite)

    row = {"train_loss": train_loss}
    if train_correct is not None:
        row["train_accuracy"] = (train_correct / n).cpu()
    if data.n_test:
        test_loss, test_correct = loss_and_correct(pop, data.x_test, data.y_test, loss_fn)
        row["test_loss"] = test_loss.cpu()
        if test_correct is not None:
            row["test_accuracy"] = (test_correct / data.n_test).cpu()
    norms = None
    if cfg.stop_below_grad_norm > 0 or cfg.objective == "grad_norm_sq":
        row["grad_norm"] = norms = own_grad_norms(pop, md, loss_fn).cpu()
    dead = _diverged_mask(hist)  # a diverged model's metrics are NaN from here on
    hist.epochs.append(epoch)
    for name, values in row.items():
        getattr(hist, name).append(values.masked_fill(dead, math.nan).tolist())

    if cfg.keep_best_test_loss:
        _keep_best(hist, pop, epoch)

    met = torch.zeros(pop.size, dtype=torch.bool)
    if cfg.stop_below_train_loss > 0:
        met |= train_loss < cfg.stop_below_train_loss
    if cfg.stop_at_train_accuracy > 0:  # exact fraction of correct examples, in float64
        met |= train_correct.cpu().double() / n >= cfg.stop_at_train_accuracy
    if cfg.stop_below_grad_norm > 0:
        met |= norms < cfg.stop_below_grad_norm
    for k in torch.nonzero(met & freezer.active).flatten().tolist():
        hist.stopped_at_epoch[k], hist.reached_target[k] = epoch, True
        freezer.freeze(k)


def _keep_best(hist: History, pop: Population, epoch: int) -> None:
    """Models whose test loss in the newest row is their lowest so far keep their
    parameters and this epoch as their best (diverged models' NaN never improves)."""
    loss = hist.test_loss[-1]
    best = [
        math.inf if e is None else hist.test_loss[hist.epochs.index(e)][k]
        for k, e in enumerate(hist.best_epoch)
    ]
    better = [k for k in range(pop.size) if math.isfinite(loss[k]) and loss[k] < best[k]]
    if not better:
        return
    flat = pop.flat_params().cpu()  # (K, P)
    if hist.best_params is None:
        hist.best_params = flat.clone()
    for k in better:
        hist.best_params[k], hist.best_epoch[k] = flat[k], epoch


def _latest(hist: History) -> dict:
    def mean(xs):
        finite = [v for v in xs if math.isfinite(v)]
        return sum(finite) / max(len(finite), 1)

    out = {"train_loss": mean(hist.train_loss[-1])}
    if hist.test_loss:
        out["test_loss"] = mean(hist.test_loss[-1])
    if hist.test_accuracy:
        out["test_accuracy"] = mean(hist.test_accuracy[-1])
    return out

"""Training loop of a population: minibatches as index tensors, one summed objective."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import vmap

from dlprobe.data.dataset import Dataset
from dlprobe.train.checkpoint import Checkpoint
from dlprobe.train.config import TrainConfig, lr_factor, make_optimizer
from dlprobe.train.history import History
from dlprobe.train.population import Population

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int, int, dict], None]  # (epochs done, total epochs, latest metrics)


def default_loss(data: Dataset) -> LossFn:
    """Cross-entropy for classification, mean squared error for regression."""
    return F.cross_entropy if data.task == "classification" else F.mse_loss


def per_model_losses(loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) ``loss_fn`` of each model's outputs ``out[k]`` against ``y[k]``.

    The same as ``vmap(loss_fn)(out, y)``; PyTorch's cross-entropy and mean squared error
    (the default losses) are computed on the flattened batch instead, which is faster.
    """
    k = out.shape[0]
    if loss_fn is F.cross_entropy and not y.is_floating_point() and out.dim() >= 3:
        per_example = F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none")
        return per_example.reshape(k, -1).mean(1)
    if loss_fn is F.mse_loss and out.shape == y.shape:
        return (out - y).square().reshape(k, -1).mean(1)
    return vmap(loss_fn)(out, y)


@torch.no_grad()
def evaluate_population(
    pop: Population, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean loss (K,) and, for integer labels, accuracy (K,) of every model on (x, y)."""
    pop.train(False)
    loss_sum = torch.zeros(pop.size, device=x.device)
    correct = torch.zeros(pop.size, device=x.device)
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        out = pop.forward(xb, shared=True)  # (K, b, out)
        loss_sum += vmap(loss_fn, in_dims=(0, None))(out, yb) * xb.shape[0]
        if not yb.is_floating_point():
            correct += (out.argmax(-1) == yb).float().sum(-1)
    pop.train(True)
    n = x.shape[0]
    return loss_sum / n, (None if y.is_floating_point() else correct / n)


def full_batch_grad_norms(pop: Population, data: Dataset, loss_fn: LossFn) -> torch.Tensor:
    """(K,) gradient norm of each model's loss on the whole training set."""
    pop.train(False)
    params = pop.parameters()
    losses = vmap(loss_fn)(pop.forward(data.x_train, shared=True), _expand(data.y_train, pop.size))
    grads = torch.autograd.grad(losses.sum(), params, allow_unused=True)
    pop.train(True)
    return _per_model_sq_norms(pop, params, grads).sqrt().detach()


def _expand(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.unsqueeze(0).expand(k, *t.shape)


def _per_model_sq_norms(pop: Population, params, grads) -> torch.Tensor:
    """(K,) squared norm of per-model gradients, given grads aligned with ``params``."""
    if pop.batched:
        return sum((g.reshape(pop.size, -1) ** 2).sum(1) for g in grads if g is not None)
    grad_of = {id(p): g for p, g in zip(params, grads, strict=True)}
    return torch.stack(
        [
            sum((grad_of[id(p)] ** 2).sum() for p in ps if grad_of[id(p)] is not None)
            for ps in pop.per_model_parameters()
        ]
    )


class _Freezer:
    """Keeps frozen models (diverged or finished) exactly where they stopped."""

    def __init__(self, pop: Population):
        self.pop = pop
        self.active = torch.ones(pop.size, dtype=torch.bool)
        self.frozen: list[list[torch.Tensor] | None] = [None] * pop.size

    def freeze(self, k: int) -> None:
        self.active[k] = False
        self.frozen[k] = [p.detach().clone() for p in self.pop.per_model_parameters()[k]]

    def mask_grads(self) -> None:
        if self.active.all():
            return
        per_model = self.pop.per_model_grads()
        for k in torch.nonzero(~self.active).flatten().tolist():
            for g in per_model[k]:
                g.zero_()

    @torch.no_grad()
    def restore(self) -> None:
        if self.active.all():
            return
        per_model = self.pop.per_model_parameters()
        for k in torch.nonzero(~self.active).flatten().tolist():
            for p, saved in zip(per_model[k], self.frozen[k], strict=True):
                p.copy_(saved)

    def state(self) -> dict:
        return {"active": self.active.clone(), "frozen": self.frozen}

    def load(self, state: dict) -> None:
        self.active, self.frozen = state["active"].clone(), state["frozen"]


def train_population(
    pop: Population,
    data: Dataset,
    cfg: TrainConfig,
    loss_fn: LossFn | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> History:
    """Train every model of ``pop`` on ``data`` and return its history.

    Model k draws its minibatch order from a generator seeded with its own seed. A model
    whose loss turns NaN/inf is frozen at its last finite parameters and listed in
    ``history.diverged_at_epoch``; the others go on. With ``checkpoint`` the state is saved
    every ``checkpoint.every_epochs`` epochs and a later call resumes from it.
    """
    cfg.validate(data.n_train)
    loss_fn = loss_fn or default_loss(data)
    device, n, K = pop.device, data.n_train, pop.size
    batch, steps = cfg.batch_size_for(n), cfg.steps_per_epoch(n)
    params = pop.parameters()
    optimizer = make_optimizer(params, cfg)
    gens = [torch.Generator().manual_seed(s) for s in pop.seeds]
    freezer = _Freezer(pop)
    hist = History(seeds=list(pop.seeds), diverged_at_epoch=[None] * K, stopped_at_epoch=[None] * K)
    start_epoch = 0
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        pop.load_state(saved["population"])
        optimizer.load_state_dict(saved["optimizer"])
        for g, s in zip(gens, saved["generators"], strict=True):
            g.set_state(s)
        torch.set_rng_state(saved["torch_rng"])
        freezer.load(saved["freezer"])
        hist = History.from_state(saved["history"])
        start_epoch = saved["epoch"]
    elif cfg.snapshot_every_epochs:
        hist.snapshot_epochs.append(0)
        hist.snapshots.append(pop.flat_params().cpu())

    t0 = time.perf_counter() - hist.seconds
    pop.train(True)
    for epoch in range(start_epoch, cfg.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # (K, n)
        for s in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, epoch + s / steps)
            idx = order[:, s * batch : (s + 1) * batch]  # (K, b)
            out = pop.forward(data.x_train[idx])  # (K, b, out)
            losses = per_model_losses(loss_fn, out, data.y_train[idx])  # (K,)
            if not torch.isfinite(losses.detach()).all():  # one check per step, then per model
                for k in torch.nonzero(~torch.isfinite(losses.detach()).cpu() & freezer.active):
                    hist.diverged_at_epoch[int(k)] = epoch
                    freezer.freeze(int(k))
            optimizer.zero_grad(set_to_none=False)
            if cfg.objective == "grad_norm_sq":
                grads = torch.autograd.grad(losses.sum(), params, create_graph=True)
                objective = _per_model_sq_norms(pop, params, grads)
            else:
                objective = losses
            if not freezer.active.all():  # frozen models add nothing (not even NaN)
                objective = torch.where(freezer.active.to(device), objective, 0.0)
            objective.sum().backward()
            if not freezer.active.all():  # a frozen model's NaN gradient must not reach
                freezer.mask_grads()  # the optimizer state
                for p in params:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            if cfg.record_steps:
                hist.step_loss.append(losses.detach().cpu().tolist())
                hist.step_grad_norm.append(pop.grad_norms().cpu().tolist())
            optimizer.step()
            freezer.restore()

        done = epoch + 1
        if done % cfg.eval_every_epochs == 0 or done == cfg.epochs:
            _evaluate_into(hist, pop, data, loss_fn, cfg, freezer, done)
            if progress:
                progress(done, cfg.epochs, _latest(hist))
        if cfg.snapshot_every_epochs and done % cfg.snapshot_every_epochs == 0:
            hist.snapshot_epochs.append(done)
            hist.snapshots.append(pop.flat_params().cpu())
        hist.seconds = time.perf_counter() - t0
        if checkpoint and (done % checkpoint.every_epochs == 0) and done < cfg.epochs:
            checkpoint.save(
                {
                    "epoch": done,
                    "population": pop.state(),
                    "optimizer": optimizer.state_dict(),
                    "generators": [g.get_state() for g in gens],
                    "torch_rng": torch.get_rng_state(),
                    "freezer": freezer.state(),
                    "history": hist.state(),
                }
            )
        if not freezer.active.any():
            break
    optimizer.zero_grad(set_to_none=True)
    return hist


def _evaluate_into(hist, pop, data, loss_fn, cfg, freezer, epoch) -> None:
    train_loss, train_acc = evaluate_population(pop, data.x_train, data.y_train, loss_fn)
    test_loss, test_acc = evaluate_population(pop, data.x_test, data.y_test, loss_fn)
    hist.epochs.append(epoch)
    hist.train_loss.append(train_loss.cpu().tolist())
    hist.test_loss.append(test_loss.cpu().tolist())
    if train_acc is not None:
        hist.train_accuracy.append(train_acc.cpu().tolist())
        hist.test_accuracy.append(test_acc.cpu().tolist())
    if cfg.stop_below_grad_norm > 0 or cfg.objective == "grad_norm_sq":
        norms = full_batch_grad_norms(pop, data, loss_fn).cpu()
        hist.grad_norm.append(norms.tolist())
        for k in torch.nonzero((norms < cfg.stop_below_grad_norm) & freezer.active).flatten():
            hist.stopped_at_epoch[int(k)] = epoch
            freezer.freeze(int(k))


def _latest(hist: History) -> dict:
    def mean(xs):
        finite = [v for v in xs if v == v and abs(v) != float("inf")]
        return sum(finite) / max(len(finite), 1)

    out = {"train_loss": mean(hist.train_loss[-1]), "test_loss": mean(hist.test_loss[-1])}
    if hist.test_accuracy:
        out["test_accuracy"] = mean(hist.test_accuracy[-1])
    return out

"""One model, a plain PyTorch loop: the reference a population must agree with.

Used by the population-equivalence test and by ``dlprobe bench`` as the one-by-one
baseline. Same seeding and minibatch order as ``train_population`` for one model.
"""

from __future__ import annotations

import torch
from torch import nn

from dlprobe.data.dataset import Dataset
from dlprobe.train.config import TrainConfig, lr_factor, make_optimizer
from dlprobe.train.evaluation import LossFn, default_loss
from dlprobe.train.noise import gradient_noise


def train_plain(
    model: nn.Module, data: Dataset, cfg: TrainConfig, seed: int, loss_fn: LossFn | None = None
) -> list[float]:
    """Train ``model`` in place; returns the minibatch loss of every step."""
    cfg.validate(data.n_train)
    loss_fn = loss_fn or default_loss(data)
    n = data.n_train
    batch, steps = cfg.batch_size_for(n), cfg.steps_per_epoch(n)
    optimizer = make_optimizer(list(model.parameters()), cfg)
    gen = torch.Generator().manual_seed(seed)
    noise = gradient_noise([seed], cfg)
    losses = []
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(data.x_train.device)
        for s in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, epoch + s / steps)
            idx = order[s * batch : (s + 1) * batch]
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            objective = loss
            if cfg.l1_penalty > 0:
                objective = loss + cfg.l1_penalty * sum(p.abs().sum() for p in model.parameters())
            optimizer.zero_grad()
            objective.backward()
            if noise is not None:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                noise.add([grads], epoch * steps + s, torch.ones(1, dtype=torch.bool))
            optimizer.step()
            losses.append(loss.item())
    return losses

"""How to train: optimizer, learning rate and schedule, batches, what to record."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch

from dlprobe.config import (
    Bound,
    Fraction,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    one_of,
    require,
    validate,
)

OPTIMIZERS = (
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adam",
    "nadam",
    "adamax",
    "adamw",
)
SCHEDULES = ("constant", "step", "cosine")
OBJECTIVES = ("loss", "grad_norm_sq")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: one_of(OPTIMIZERS, "optimizer") = "adam"  # element-wise torch.optim optimizer
    lr: PosFloat = 1e-3  # peak learning rate
    epochs: PosInt = 100  # passes over the training set (the cap when a stop target is set)
    batch_size: NonNegInt = 64  # examples per step; 0 means the whole training set
    momentum: Annotated[float, Bound(ge=0, lt=1)] = 0.9  # for momentum, nesterov and rmsprop
    weight_decay: NonNegFloat = 0.0  # L2 penalty (decoupled for adamw)
    # L1 penalty: l1_penalty * (sum of |parameter| over all parameters) is added to each
    # model's training objective (its gradient l1_penalty * sign); recorded losses exclude it
    l1_penalty: NonNegFloat = 0.0
    # Annealed Gaussian gradient noise (Neelakantan et al. 2015): before optimizer step t
    # (0 first) every gradient entry gets N(0, grad_noise_eta / (1 + t)^grad_noise_gamma),
    # drawn from a generator seeded from the model's seed (0: off)
    grad_noise_eta: NonNegFloat = 0.0
    grad_noise_gamma: NonNegFloat = 0.55  # decay exponent of the noise variance
    schedule: one_of(SCHEDULES, "schedule") = "constant"  # learning-rate decay
    warmup_epochs: NonNegFloat = 0.0  # linear warm-up from 0 to lr, in epochs
    step_every_epochs: PosInt = 30  # for schedule=step: epochs between decays
    step_gamma: Annotated[float, Bound(gt=0, le=1)] = 0.1  # for schedule=step: factor per decay
    # "loss", or "grad_norm_sq" (squared gradient norm of the loss)
    objective: one_of(OBJECTIVES, "objective") = "loss"
    # Stop targets, checked at every evaluation (0: off). A model that meets one is frozen
    # where it is and the others go on; the training ends when every model is frozen, or
    # after ``epochs`` (the cap).
    stop_below_grad_norm: NonNegFloat = 0.0  # full-batch gradient norm of the loss below this
    stop_below_train_loss: NonNegFloat = 0.0  # loss on the whole training set below this
    stop_at_train_accuracy: Fraction = 0.0  # fraction of training examples right, in (0, 1]
    # Divergence: a model is frozen at its last finite parameters once a minibatch loss is
    # NaN/inf, or at an evaluation once its train loss or a parameter is NaN/inf or its
    # train loss exceeds this factor times its own train loss before training (0: off; a
    # model that starts at loss 0 is not checked). Relative, so one value fits
    # cross-entropy (starts near ln C: threshold ~2e6 for 10 classes) and MSE on targets
    # of any scale; no healthy training climbs a million-fold above where it started.
    blowup_loss_factor: NonNegFloat = 1e6
    eval_every_epochs: PosInt = 1  # full train/test evaluation period, in epochs
    record_steps: bool = False  # record per-step loss and gradient norm of every model
    snapshot_every_epochs: NonNegInt = 0  # keep flat parameters every n epochs (0: none)
    # keep each model's parameters at the evaluation of its lowest test loss, and that
    # epoch (History.best_params, best_epoch): early stopping, the test split as validation
    keep_best_test_loss: bool = False

    def check(self) -> None:
        """Rules across fields (``dlprobe.config.validate`` checks each field first)."""
        require(
            self.blowup_loss_factor == 0 or self.blowup_loss_factor > 1,
            f"blowup_loss_factor must be > 1, or 0 for off, got {self.blowup_loss_factor}",
        )
        require(
            self.l1_penalty == 0 or self.objective == "loss",
            f"l1_penalty is added to objective 'loss'; set it to 0 for {self.objective!r}",
        )
        require(
            self.optimizer != "nesterov" or self.momentum > 0,
            "momentum must be > 0 for nesterov (torch refuses 0)",
        )

    def validate(self, n_train: int) -> None:
        """Raise DlprobeError for impossible values, before any training starts."""
        validate(self)
        require(
            self.batch_size <= n_train,
            f"batch_size must be in [1, {n_train}] (the training set size) or 0 for "
            f"full batch, got {self.batch_size}",
        )

    @property
    def has_stop_target(self) -> bool:
        """Whether any stop target (gradient norm, train loss, train accuracy) is set."""
        return (
            self.stop_below_grad_norm > 0
            or self.stop_below_train_loss > 0
            or self.stop_at_train_accuracy > 0
        )

    def batch_size_for(self, n_train: int) -> int:
        return n_train if self.batch_size == 0 else self.batch_size

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size_for(n_train))


def make_optimizer(params: list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """An element-wise torch.optim optimizer: over stacked tensors it is K independent ones."""
    o, lr, wd, m = cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum
    if o == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if o in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=m, nesterov=o == "nesterov", weight_decay=wd)
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=0.0, weight_decay=wd)
    if o in ("adam", "adamw"):
        cls = torch.optim.Adam if o == "adam" else torch.optim.AdamW
        try:  # one fused kernel instead of a dozen small ops per tensor: ~3x faster steps
            return cls(params, lr=lr, weight_decay=wd, fused=True)
        except RuntimeError:  # fused kernels on this device need a newer torch (CPU: 2.4)
            return cls(params, lr=lr, weight_decay=wd)
    cls = {
        "adagrad": torch.optim.Adagrad,
        "nadam": torch.optim.NAdam,
        "adamax": torch.optim.Adamax,
    }[o]
    return cls(params, lr=lr, weight_decay=wd)


def lr_factor(cfg: TrainConfig, epoch: float) -> float:
    """Multiplier of ``cfg.lr`` at a (fractional) epoch: warm-up, then the decay schedule."""
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return (epoch + 1e-12) / cfg.warmup_epochs
    if cfg.schedule == "step":
        return cfg.step_gamma ** int(epoch // cfg.step_every_epochs)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-12)
        t = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0

"""Freezing models of a population in place: a model that diverged or met its stop target
stays exactly where it stopped while the others train on (its gradients zeroed, its
parameters put back after every step), and a model whose parameters overflowed in a step
is frozen at the last ones that were all finite."""

from __future__ import annotations

import torch

from dlprobe.train.population import Population


class Freezer:
    """Keeps frozen models (diverged or finished) exactly where they stopped.

    It also keeps each active model's parameters from the last time they were all finite
    (before training, then at every evaluation): a model whose parameters overflowed in a
    step is frozen at those instead.
    """

    def __init__(self, pop: Population):
        self.pop = pop
        self.active = torch.ones(pop.size, dtype=torch.bool)
        self.frozen: list[list[torch.Tensor] | None] = [None] * pop.size
        # each model's last finite parameters: a copy of its own, or its slice of
        # ``_snapshot`` (a copy of every stacked parameter, taken when all the active
        # models were finite) where ``_in_snapshot`` says so
        self.last_finite: list[list[torch.Tensor] | None] = [None] * pop.size
        self._snapshot: list[torch.Tensor] = []
        self._in_snapshot = [False] * pop.size
        self._changed()

    def _changed(self) -> None:
        """Cache what every step asks of ``active``, so a step asks the tensor nothing."""
        self.all_active, self.any_active = bool(self.active.all()), bool(self.active.any())
        self.active_on_device = self.active.to(self.pop.device)  # (K,) bool
        self.weights = self.active_on_device.float()  # (K,) 1 for a trained model, 0 frozen

    @torch.no_grad()
    def remember_finite(self, finite: torch.Tensor) -> None:
        """Copy the parameters of every active model k with ``finite[k]`` (a (K,) mask):
        of a batched population whose active models are all finite, one copy of each
        stacked parameter (not one per model and parameter)."""
        kept = finite & self.active
        if self.pop.batched and torch.equal(kept, self.active) and self.any_active:
            self._snapshot = [p.detach().clone() for p in self.pop.parameters()]
            for k in torch.nonzero(kept).flatten().tolist():
                self.last_finite[k], self._in_snapshot[k] = None, True
            return
        per_model = self.pop.per_model_parameters()
        for k in torch.nonzero(kept).flatten().tolist():
            self.last_finite[k] = [p.detach().clone() for p in per_model[k]]
            self._in_snapshot[k] = False

    def _last_finite(self, k: int) -> list[torch.Tensor] | None:
        """Model k's last finite parameters (its own tensors), or None if none are kept."""
        if self._in_snapshot[k]:
            return [p[k].clone() for p in self._snapshot]
        return self.last_finite[k]

    @torch.no_grad()
    def freeze(self, k: int) -> None:
        """Stop model k where it is, or at its last finite parameters if some are not.

        Changes no parameter (a step's graph may still need them): ``restore`` does.
        """
        kept = [p.detach().clone() for p in self.pop.per_model_parameters()[k]]
        last = self._last_finite(k)
        if last is not None and not all(torch.isfinite(p).all() for p in kept):
            kept = last
        self.active[k] = False
        self.frozen[k], self.last_finite[k], self._in_snapshot[k] = kept, None, False
        self._changed()

    def mask_grads(self) -> None:
        if self.all_active:
            return
        per_model = self.pop.per_model_grads()
        for k in torch.nonzero(~self.active).flatten().tolist():
            for g in per_model[k]:
                g.zero_()

    @torch.no_grad()
    def restore(self) -> None:
        if self.all_active:
            return
        per_model = self.pop.per_model_parameters()
        for k in torch.nonzero(~self.active).flatten().tolist():
            for p, saved in zip(per_model[k], self.frozen[k], strict=True):
                p.copy_(saved)

    def state(self) -> dict:
        return {
            "active": self.active.clone(),
            "frozen": self.frozen,
            "last_finite": [self._last_finite(k) for k in range(self.pop.size)],
        }

    def load(self, state: dict) -> None:
        """Take a ``state()``, moving its tensors (loaded on the CPU) to the population's device."""

        def to_device(per_model):
            device = self.pop.device
            return [None if ps is None else [p.to(device) for p in ps] for ps in per_model]

        self.active = state["active"].clone()
        self.frozen, self.last_finite = to_device(state["frozen"]), to_device(state["last_finite"])
        self._snapshot, self._in_snapshot = [], [False] * self.pop.size
        self._changed()

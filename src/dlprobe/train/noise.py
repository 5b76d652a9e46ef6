"""Annealed Gaussian gradient noise (Neelakantan et al. 2015, "Adding gradient noise
improves learning for very deep networks").

Before optimizer step t (0 for the first step of a training) every gradient entry gets
independent noise N(0, σ_t²) with σ_t² = η / (1 + t)^γ; the paper used η ∈ {0.01, 0.3, 1}
and γ = 0.55. Each model draws from its own generator, seeded from the model's seed, so a
model's noise does not depend on the population it trains in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dlprobe.train.config import TrainConfig

# Offset of a model's noise seed from its own seed: its minibatch order is drawn from a
# generator seeded with the seed itself, and the two streams should not coincide.
NOISE_SEED_OFFSET = 2**32


def noise_std(eta: float, gamma: float, step: int) -> float:
    """σ_t = sqrt(η / (1 + t)^γ) at optimizer step ``step`` (t, counted from 0)."""
    return math.sqrt(eta / (1 + step) ** gamma)


def noise_generator(seed: int) -> torch.Generator:
    """The CPU generator a model with this seed draws its gradient noise from."""
    return torch.Generator().manual_seed(int(seed) + NOISE_SEED_OFFSET)


def draw(gen: torch.Generator, grads: Sequence[torch.Tensor], std: float) -> list[torch.Tensor]:
    """One model's noise: a single flat N(0, std²) draw over its gradients in order, split
    and shaped like them (on their device and dtype)."""
    sizes = [g.numel() for g in grads]
    flat = torch.randn(sum(sizes), generator=gen, dtype=grads[0].dtype) * std  # (P,)
    return [
        part.reshape(g.shape).to(g.device) for part, g in zip(flat.split(sizes), grads, strict=True)
    ]


class GradientNoise:
    """The noise of a population: one generator per model, added in place to its grads."""

    def __init__(self, seeds: Sequence[int], eta: float, gamma: float):
        self.eta, self.gamma = eta, gamma
        self.gens = [noise_generator(s) for s in seeds]

    @torch.no_grad()
    def add(self, per_model_grads: list[list[torch.Tensor]], step: int, active: torch.Tensor):
        """Add step ``step``'s noise to the grads of every model k with ``active[k]``.

        Every model draws, active or not, so a model's stream depends on the step only.
        """
        std = noise_std(self.eta, self.gamma, step)
        for k, (gen, grads) in enumerate(zip(self.gens, per_model_grads, strict=True)):
            noise = draw(gen, grads, std)
            if active[k]:
                for g, z in zip(grads, noise, strict=True):
                    g.add_(z)

    def state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.gens]

    def load(self, state: list[torch.Tensor]) -> None:
        for g, s in zip(self.gens, state, strict=True):
            g.set_state(s)


def gradient_noise(seeds: Sequence[int], cfg: TrainConfig) -> GradientNoise | None:
    """The gradient noise ``cfg`` asks for, for models of these seeds (None: off)."""
    if cfg.grad_noise_eta == 0:
        return None
    return GradientNoise(seeds, cfg.grad_noise_eta, cfg.grad_noise_gamma)

"""Permutation symmetry on flat weight vectors: whole training trajectories permuted or
aligned at once (see ``alignment.py`` for one model).

A trajectory is (T, P): a model's flat weights (``parameters()`` order) at T snapshots.
One permutation per hidden layer is applied to every snapshot, so an aligned trajectory
is the same path through the same functions, only written in another order of units. The
alignment is chosen on the final snapshot, where the units have settled.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.alignment import align_hidden_units, permute_hidden_units


def _with_params(template: nn.Module, vector: torch.Tensor) -> nn.Module:
    """A copy of ``template`` (its dtype and device those of ``vector``) holding ``vector``."""
    model = copy.deepcopy(template).to(vector.device, vector.dtype)
    nn.utils.vector_to_parameters(vector, model.parameters())
    return model


def _flat(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach()


def _check_trajectory(template: nn.Module, trajectory: torch.Tensor) -> None:
    p = sum(q.numel() for q in template.parameters())
    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim != 2 or trajectory.shape[1] != p:
        shape = tuple(trajectory.shape) if isinstance(trajectory, torch.Tensor) else trajectory
        raise DlprobeError(f"a trajectory must be a tensor (T, {p}) of flat weights, got {shape}")


def hidden_widths(template: nn.Module) -> list[int]:
    """Units of each hidden layer: the outputs of every ``nn.Linear`` but the last."""
    return [m.out_features for m in template.modules() if isinstance(m, nn.Linear)][:-1]


def random_unit_permutations(template: nn.Module, seed: int) -> list[torch.Tensor]:
    """One seeded random permutation per hidden layer of ``template``, in layer order."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(w, generator=gen) for w in hidden_widths(template)]


def permute_trajectory(
    template: nn.Module, trajectory: torch.Tensor, permutations: Sequence[torch.Tensor]
) -> torch.Tensor:
    """(T, P) -> (T, P): every snapshot with hidden layer i's units reordered by
    ``permutations[i]`` (new unit k = old unit ``permutations[i][k]``).

    Args:
        template: an MLP of the trajectory's architecture (see ``permute_hidden_units``);
            only its structure is used.
        trajectory: (T, P) flat weights.
        permutations: one index sequence per hidden layer.
    """
    _check_trajectory(template, trajectory)
    return torch.stack(
        [_flat(permute_hidden_units(_with_params(template, v), permutations)) for v in trajectory]
    )


def align_trajectory(
    template: nn.Module, reference: torch.Tensor, trajectory: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Align the final snapshot of ``trajectory`` (T, P) to ``reference`` (P,) by
    ``align_hidden_units`` and apply the same permutations to every snapshot.

    Returns:
        ``(aligned (T, P), permutations)``, one index tensor per hidden layer.
    """
    _check_trajectory(template, trajectory)
    _check_trajectory(template, reference.reshape(1, -1))
    ref = _with_params(template, reference.to(trajectory))
    _, perms = align_hidden_units(ref, _with_params(template, trajectory[-1]))
    return permute_trajectory(template, trajectory, perms), perms


def output_difference(
    template: nn.Module, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> dict[str, float | bool]:
    """How far the functions of two flat weight vectors (P,) differ on the inputs x (n, ...):
    ``max_abs_output_difference`` and whether every input's argmax output (predicted class)
    is the same (``same_predictions``). A permuted twin gives 0 and True."""
    for v in (a, b):
        _check_trajectory(template, v.reshape(1, -1))
    with torch.no_grad():
        out = [_with_params(template, v)(x.to(v)) for v in (a, b)]  # (n, C) each
    return {
        "max_abs_output_difference": (out[0] - out[1]).abs().max().item(),
        "same_predictions": bool(torch.equal(out[0].argmax(-1), out[1].argmax(-1))),
    }

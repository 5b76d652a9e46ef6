"""Permutation symmetry of MLPs: reorder hidden units to match a reference network.

Exchanging two hidden units together with their incoming weights, bias and outgoing
weights leaves the function unchanged, so two trained networks can be "different"
points in parameter space and still the same function up to a permutation of units.
``align_hidden_units`` removes that symmetry before runs are compared or projected.

Hidden layer i is the output of the i-th ``nn.Linear`` (every Linear but the last).
Permuting it moves rows of that layer's weight and bias (and of a BatchNorm's parameters
and running statistics that sits after it) and columns of the next Linear's weight.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.models.activations import Cos

# Modules that act on each unit separately: they commute with a permutation of units.
ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    Cos,
    nn.Identity,
    nn.Dropout,
)


@dataclass(frozen=True)
class _Hidden:
    """One hidden layer: the Linear producing it, an optional BatchNorm, the next Linear."""

    linear: nn.Linear
    batch_norm: nn.BatchNorm1d | None
    next_linear: nn.Linear


def _hidden_layers(model: nn.Module) -> list[_Hidden]:
    """Parse ``[Flatten], Linear, (BatchNorm1d), act, ..., Linear``; reject anything else."""
    if not isinstance(model, nn.Sequential):
        raise DlprobeError(
            f"hidden-unit alignment needs an nn.Sequential MLP (e.g. dlprobe.models.MLP), "
            f"got {type(model).__name__}"
        )
    linears: list[nn.Linear] = []
    norms: list[nn.BatchNorm1d | None] = []
    for i, m in enumerate(model):
        if isinstance(m, nn.Flatten) and not linears:
            continue
        if isinstance(m, nn.Linear):
            linears.append(m)
            norms.append(None)
        elif isinstance(m, nn.BatchNorm1d) and linears and norms[-1] is None:
            norms[-1] = m
        elif not isinstance(m, ELEMENTWISE):
            raise DlprobeError(
                f"hidden-unit alignment supports Linear layers separated by element-wise "
                f"activations (and BatchNorm1d); module {i} is {type(m).__name__}, whose "
                f"units cannot be permuted one by one"
            )
    if not linears:
        raise DlprobeError("the model has no nn.Linear layer")
    if norms[-1] is not None:
        raise DlprobeError("a BatchNorm1d after the output layer is not supported")
    pairs = zip(linears[:-1], norms[:-1], linears[1:], strict=True)
    return [_Hidden(a, bn, b) for a, bn, b in pairs]


def _check_same_architecture(reference: nn.Module, model: nn.Module) -> None:
    ref_types = [type(m).__name__ for m in reference.modules()]
    mod_types = [type(m).__name__ for m in model.modules()]
    if ref_types != mod_types:
        raise DlprobeError(
            f"reference and model must have the same modules, got {ref_types} and {mod_types}"
        )
    ref_shapes = {n: tuple(t.shape) for n, t in reference.state_dict().items()}
    mod_shapes = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    if ref_shapes != mod_shapes:
        names = [*ref_shapes, *(n for n in mod_shapes if n not in ref_shapes)]
        name = next(n for n in names if ref_shapes.get(n) != mod_shapes.get(n))
        raise DlprobeError(
            f"reference and model must have the same parameter shapes; {name!r} is "
            f"{ref_shapes.get(name)} in the reference and {mod_shapes.get(name)} in the model"
        )


def _permute_layer(layer: _Hidden, perm: torch.Tensor) -> None:
    """In place on a copy: new unit k is old unit ``perm[k]``."""
    layer.linear.weight.copy_(layer.linear.weight[perm])
    if layer.linear.bias is not None:
        layer.linear.bias.copy_(layer.linear.bias[perm])
    bn = layer.batch_norm
    if bn is not None:
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            if t is not None:
                t.copy_(t[perm])
    layer.next_linear.weight.copy_(layer.next_linear.weight[:, perm])


def _fresh_copy(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model)
    for p in out.parameters():
        p.grad = None  # gradients of the original units would no longer match the order
    return out


def permute_hidden_units(model: nn.Module, permutations: Sequence[torch.Tensor]) -> nn.Module:
    """A new model whose hidden layer i has its units reordered by ``permutations[i]``.

    Args:
        model: an MLP (``nn.Sequential`` of Linear layers, optional BatchNorm1d and
            element-wise activations); left untouched.
        permutations: one index tensor (or sequence) per hidden layer, in order; new unit k
            of layer i is the old unit ``permutations[i][k]``.

    Returns:
        A deep copy computing the same function (gradients are not copied).
    """
    layers = _hidden_layers(model)
    if len(permutations) != len(layers):
        raise DlprobeError(
            f"need one permutation per hidden layer ({len(layers)}), got {len(permutations)}"
        )
    out = _fresh_copy(model)
    device = next(out.parameters()).device
    with torch.no_grad():
        for i, (layer, perm) in enumerate(zip(_hidden_layers(out), permutations, strict=True)):
            perm = torch.as_tensor(perm, dtype=torch.long, device=device)
            width = layer.linear.out_features
            if perm.shape != (width,) or not torch.equal(
                perm.sort().values, torch.arange(width, device=device)
            ):
                raise DlprobeError(
                    f"permutations[{i}] must be a permutation of 0..{width - 1}, "
                    f"got {perm.tolist()}"
                )
            _permute_layer(layer, perm)
    return out


def _unit_features(layer: nn.Linear) -> torch.Tensor:
    """Each unit's incoming weights and bias as one row (units, in + 1), float64."""
    w = layer.weight.detach().to(torch.float64)
    b = layer.bias.detach().to(torch.float64) if layer.bias is not None else w.new_zeros(len(w))
    return torch.cat([w, b[:, None]], dim=1)


def align_hidden_units(
    reference: nn.Module, model: nn.Module
) -> tuple[nn.Module, list[torch.Tensor]]:
    """Permute ``model``'s hidden units to best match ``reference``'s, layer by layer.

    For hidden layer i (from the first), unit j of the reference and unit k of the model
    are compared by the squared Euclidean distance between their incoming weights and
    bias, ``||[W_ref[j], b_ref[j]] - [W[k], b[k]]||^2``, where the model's incoming
    columns are already reordered by layer i-1's permutation (so both sides index the
    same inputs). The permutation minimizing the total cost is found by Hungarian
    matching (``scipy.optimize.linear_sum_assignment``). Outgoing weights are not part
    of the cost: they connect to the next layer's not-yet-aligned units. BatchNorm
    parameters follow their units but do not enter the cost.

    Args:
        reference: the MLP to match; left untouched.
        model: an MLP of the same architecture; left untouched.

    Returns:
        ``(aligned, permutations)``: a new model computing the same function as ``model``,
        and one index tensor per hidden layer such that
        ``permute_hidden_units(model, permutations)`` equals ``aligned``.
    """
    from scipy.optimize import linear_sum_assignment  # slow to import: only when used

    _check_same_architecture(reference, model)
    ref_layers = _hidden_layers(reference)
    aligned = _fresh_copy(model)
    permutations = []
    with torch.no_grad():
        for ref, mine in zip(ref_layers, _hidden_layers(aligned), strict=True):
            # The previous permutation is already applied to mine.linear's columns.
            a, b = _unit_features(ref.linear), _unit_features(mine.linear)  # (units, in + 1)
            cost = torch.cdist(a, b) ** 2  # (units, units): reference j vs model k
            _, cols = linear_sum_assignment(cost.cpu().numpy())
            perm = torch.as_tensor(cols, dtype=torch.long, device=a.device)
            _permute_layer(mine, perm.to(mine.linear.weight.device))
            permutations.append(perm.cpu())
    return aligned, permutations

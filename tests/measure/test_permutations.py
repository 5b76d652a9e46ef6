"""Permuted and aligned trajectories: every snapshot stays the same function (brute force:
each snapshot rebuilt as its own model and run on inputs)."""

import copy

import pytest
import torch
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.alignment import align_hidden_units
from dlprobe.measure.permutations import (
    align_trajectory,
    hidden_widths,
    output_difference,
    permute_trajectory,
    random_unit_permutations,
)
from dlprobe.models import MLP


def _model(template, vector):
    model = copy.deepcopy(template).to(torch.float64)
    nn.utils.vector_to_parameters(vector, model.parameters())
    return model


def _flat(model):
    return nn.utils.parameters_to_vector(model.parameters()).detach()


@pytest.fixture
def problem():
    template = MLP([6, 5, 4, 3], "tanh").to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    p = _flat(template).numel()
    reference = torch.randn(p, generator=gen, dtype=torch.float64)
    trajectory = torch.randn(5, p, generator=gen, dtype=torch.float64)  # (T, P)
    x = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    return template, reference, trajectory, x


def test_alignment_keeps_every_snapshot_the_same_function(problem):
    template, reference, trajectory, x = problem
    aligned, perms = align_trajectory(template, reference, trajectory)
    assert aligned.shape == trajectory.shape
    assert [sorted(q.tolist()) for q in perms] == [list(range(5)), list(range(4))]
    with torch.no_grad():
        for before, after in zip(trajectory, aligned, strict=True):
            torch.testing.assert_close(
                _model(template, after)(x), _model(template, before)(x), atol=1e-12, rtol=0
            )
    # one permutation for the whole trajectory, chosen on the final snapshot
    final_only, _ = align_trajectory(template, reference, trajectory[-1:])
    torch.testing.assert_close(final_only[0], aligned[-1])
    expected, _ = align_hidden_units(_model(template, reference), _model(template, trajectory[-1]))
    torch.testing.assert_close(aligned[-1], _flat(expected))


def test_permuted_twin_is_the_same_function_and_aligns_back_exactly(problem):
    template, reference, _, x = problem
    perms = random_unit_permutations(template, 3)
    assert [len(q) for q in perms] == hidden_widths(template) == [5, 4]
    twin = permute_trajectory(template, reference[None], perms)
    assert (twin[0] - reference).norm() > 0.1 * reference.norm()
    with torch.no_grad():
        torch.testing.assert_close(
            _model(template, twin[0])(x), _model(template, reference)(x), atol=1e-12, rtol=0
        )
    # brute force on the first layer: new unit k holds old unit perms[0][k]'s weights
    w = _model(template, reference).linears[0].weight
    torch.testing.assert_close(_model(template, twin[0]).linears[0].weight, w[perms[0]])
    back, _ = align_trajectory(template, reference, twin)
    assert (back[0] - reference).norm().item() < 1e-12
    # the same seed gives the same permutations; the template is left as it was
    assert all(
        torch.equal(a, b) for a, b in zip(perms, random_unit_permutations(template, 3), strict=True)
    )


def test_wrong_shapes_are_refused(problem):
    template, reference, trajectory, _ = problem
    with pytest.raises(DlprobeError, match=r"tensor \(T, "):
        permute_trajectory(template, trajectory[:, :-1], random_unit_permutations(template, 0))
    with pytest.raises(DlprobeError, match=r"tensor \(T, "):
        align_trajectory(template, reference[:-1], trajectory)
    with pytest.raises(DlprobeError, match="one permutation per hidden layer"):
        permute_trajectory(template, trajectory, [torch.arange(5)])


def test_output_difference_is_zero_for_a_twin_and_matches_brute_force_otherwise(problem):
    template, reference, trajectory, x = problem
    twin = permute_trajectory(template, reference[None], random_unit_permutations(template, 5))[0]
    same = output_difference(template, reference, twin, x)
    assert same["max_abs_output_difference"] < 1e-12 and same["same_predictions"]
    other = output_difference(template, reference, trajectory[0], x)
    with torch.no_grad():
        a, b = _model(template, reference)(x), _model(template, trajectory[0])(x)
    assert other["max_abs_output_difference"] == pytest.approx((a - b).abs().max().item())
    assert other["same_predictions"] == bool(torch.equal(a.argmax(1), b.argmax(1)))
    with pytest.raises(DlprobeError, match=r"tensor \(T, "):
        output_difference(template, reference, reference[:-1], x)

"""The flat-vector probes against one model copy at a time (brute force)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from probe_util import assert_untouched, snapshot, tiny_classifier, tiny_regression
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.flat import (
    gaussian_perturbations,
    losses_at,
    one_parameter_losses,
    parameter_names,
    parameter_slice,
    plane_shadow,
)
from dlprobe.models import MLP

PROBLEMS = {"regression": tiny_regression, "classifier": tiny_classifier}


def _loss_with(model, theta, loss_fn, x, y) -> torch.Tensor:
    """Brute force: a copy of the model holding theta, evaluated once."""
    other = copy.deepcopy(model)
    nn.utils.vector_to_parameters(theta, other.parameters())
    with torch.no_grad():
        return loss_fn(other(x), y)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_losses_at_many_vectors_match_one_copy_at_a_time(problem):
    model, loss_fn, x, y = PROBLEMS[problem]()
    before = snapshot(model)
    gen = torch.Generator().manual_seed(0)
    p = sum(q.numel() for q in model.parameters())
    thetas = torch.randn(7, p, generator=gen)
    batched = losses_at(model, loss_fn, x, y, thetas, chunk_size=3)  # chunks of 3, 3, 1
    expected = torch.stack([_loss_with(model, t, loss_fn, x, y) for t in thetas])
    torch.testing.assert_close(batched, expected)
    assert_untouched(model, before)
    assert losses_at(model, loss_fn, x, y, thetas[:0]).shape == (0,)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_one_parameter_losses_move_exactly_one_entry(problem):
    model, loss_fn, x, y = PROBLEMS[problem]()
    before = snapshot(model)
    theta = nn.utils.parameters_to_vector(model.parameters()).detach()
    deltas = [-0.5, 0.0, 0.25]
    got = one_parameter_losses(model, loss_fn, x, y, deltas)  # (P, G)
    assert got.shape == (theta.numel(), 3)
    for i in (0, theta.numel() // 2, theta.numel() - 1):
        for g, d in enumerate(deltas):
            moved = theta.clone()
            moved[i] += d
            torch.testing.assert_close(got[i, g], _loss_with(model, moved, loss_fn, x, y))
    own = _loss_with(model, theta, loss_fn, x, y)
    torch.testing.assert_close(got[:, 1], own.expand(theta.numel()))
    assert_untouched(model, before)


def test_parameter_names_follow_the_flat_vector():
    names = parameter_names(MLP([1, 4, 4, 1]))
    assert len(names) == 33 and len(set(names)) == 33
    assert names[:5] == ["W1[0,0]", "W1[1,0]", "W1[2,0]", "W1[3,0]", "b1[0]"]
    assert names[-1] == "b3[0]"
    # a parameter outside a Linear is named by its own name
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    names = parameter_names(model)
    assert names[:2] == ["W1[0,0]", "W1[0,1]"] and "1.weight[2]" in names and len(names) == 19


def test_parameter_slice_is_the_module_entries():
    model = MLP([5, 4, 3, 2])
    flat = nn.utils.parameters_to_vector(model.parameters()).detach()
    for layer in model.linears:
        s = parameter_slice(model, layer)
        torch.testing.assert_close(
            flat[s], torch.cat([layer.weight.reshape(-1), layer.bias]).detach()
        )
    assert parameter_slice(model, model.linears[0]) == slice(0, 5 * 4 + 4)
    with pytest.raises(DlprobeError, match="not a submodule"):
        parameter_slice(model, nn.Linear(5, 4))
    with pytest.raises(DlprobeError, match="no parameters"):
        parameter_slice(model, nn.ReLU())


def test_bad_inputs_are_refused():
    model, loss_fn, x, y = tiny_regression()
    with pytest.raises(DlprobeError, match=r"thetas must be a tensor \(N, "):
        losses_at(model, loss_fn, x, y, torch.zeros(3, 5))
    with pytest.raises(DlprobeError, match="chunk_size"):
        losses_at(model, loss_fn, x, y, torch.zeros(1, 53), chunk_size=0)
    with pytest.raises(DlprobeError, match="deltas"):
        one_parameter_losses(model, F.mse_loss, x, y, [])
    with pytest.raises(DlprobeError, match="same number of examples"):
        losses_at(model, loss_fn, x, y[:3], torch.zeros(1, 53))


def test_gaussian_perturbations_are_seeded_scaled_and_scored_one_by_one():
    model, loss_fn, x, y = tiny_regression()
    before = snapshot(model)
    theta = nn.utils.parameters_to_vector(model.parameters()).detach()
    points, radius, losses = gaussian_perturbations(model, loss_fn, x, y, [0.01, 1.0], 200, seed=3)
    assert points.shape == (400, theta.numel()) and radius.tolist() == [0.01] * 200 + [1.0] * 200
    for r in (0.01, 1.0):  # the noise has the asked standard deviation per entry
        offsets = points[radius == r] - theta
        assert offsets.std().item() == pytest.approx(r, rel=0.05)
    for i in (0, 199, 200, 399):
        torch.testing.assert_close(losses[i], _loss_with(model, points[i], loss_fn, x, y))
    again, _, _ = gaussian_perturbations(model, loss_fn, x, y, [0.01, 1.0], 200, seed=3)
    assert torch.equal(points, again)
    assert_untouched(model, before)
    with pytest.raises(DlprobeError, match="radii"):
        gaussian_perturbations(model, loss_fn, x, y, [0.1, 0.0], 2)
    with pytest.raises(DlprobeError, match="per_radius"):
        gaussian_perturbations(model, loss_fn, x, y, [0.1], 0)


def test_plane_shadow_of_points_in_and_out_of_the_plane():
    gen = torch.Generator().manual_seed(0)
    center = torch.randn(6, generator=gen, dtype=torch.float64)
    d = [torch.randn(6, generator=gen, dtype=torch.float64) for _ in range(2)]
    normal = torch.randn(6, generator=gen, dtype=torch.float64)
    normal -= sum((normal @ q) * q for q in torch.linalg.qr(torch.stack(d).T)[0].T)  # ⊥ plane
    coords = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)
    in_plane = center + coords @ torch.stack(d)  # (2, P): on the plane
    points = torch.cat([in_plane, in_plane[:1] + 3 * normal / normal.norm()])  # last: 3 off it
    ab, dist, shadow = plane_shadow(points, center, d)
    np.testing.assert_allclose(ab[:2], coords.numpy(), atol=1e-10)
    np.testing.assert_allclose(ab[2], ab[0], atol=1e-10)  # the normal offset adds nothing
    np.testing.assert_allclose(shadow[:2], dist[:2], rtol=1e-10)  # wholly in the plane
    expected = (in_plane[0] - center).norm().item()
    np.testing.assert_allclose([dist[2], shadow[2]], [np.hypot(expected, 3.0), expected])

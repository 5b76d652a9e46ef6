import copy

import numpy as np
import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier, tiny_regression

from dlprobe import DlprobeError
from dlprobe.measure._functional import flat_params, unflatten
from dlprobe.measure.surface import (
    filter_normalize,
    loss_on_plane,
    loss_surface,
    plane_through,
    project_onto_directions,
    random_directions,
)
from dlprobe.models import CNN, MLP


def _loss_of_model_at(model, loss_fn, x, y, theta):
    """Brute force: a deep copy with ``theta`` loaded through load_state_dict."""
    other = copy.deepcopy(model).eval()
    state = other.state_dict()
    state.update({k: v.clone() for k, v in unflatten(model, theta).items()})
    other.load_state_dict(state)
    with torch.no_grad():
        return loss_fn(other(x), y).item()


def _models():
    torch.manual_seed(0)
    return {
        "mlp-batchnorm": MLP([4, 6, 5, 3], "relu", batch_norm=True),
        "cnn": CNN([2, 8], [3, 4], num_classes=3),
    }


@pytest.mark.parametrize("name", ["mlp-batchnorm", "cnn"])
def test_filter_normalized_directions(name):
    model = _models()[name]
    dirs = random_directions(model, 2, seed=3)
    assert len(dirs) == 2 and not torch.equal(dirs[0], dirs[1])
    for d in dirs:
        parts = unflatten(model, d)
        for pname, p in model.named_parameters():
            if p.ndim == 1:  # biases and BatchNorm scales/shifts are not moved
                assert torch.equal(parts[pname], torch.zeros_like(p)), pname
                continue
            for filt_d, filt_w in zip(parts[pname], p.detach(), strict=True):
                torch.testing.assert_close(filt_d.norm(), filt_w.norm(), rtol=1e-5, atol=0)
    again = random_directions(model, 2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(dirs, again, strict=True))


def test_filter_normalize_is_per_filter_scale_invariant_and_raw_directions_are_gaussian():
    model = _models()["cnn"]
    raw = random_directions(model, 1, filter_normalize=False, seed=1)[0]
    assert (raw != 0).all()  # biases move too without normalization
    a = filter_normalize(model, raw)
    b = filter_normalize(model, 5.0 * raw)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(random_directions(model, 1, seed=1)[0], a)


def test_1d_surface_at_zero_is_the_model_loss():
    model, loss_fn, x, y = tiny_regression("tanh")
    (d,) = random_directions(model, 1)
    grid = [-1.0, -0.5, 0.0, 0.5]
    s = loss_surface(model, loss_fn, x, y, directions=[d], grid=grid)
    assert s.loss.shape == (4,) and len(s.coords) == 1
    with torch.no_grad():
        expected = loss_fn(model.eval()(x), y).item()
    assert s.loss[2] == pytest.approx(expected, rel=1e-6)
    assert s.center_loss == pytest.approx(expected, rel=1e-6)
    for a, value in zip(grid, s.loss, strict=True):
        theta = flat_params(model) + a * d
        assert value == pytest.approx(_loss_of_model_at(model, loss_fn, x, y, theta), rel=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_2d_surface_matches_hand_built_models(chunk_size):
    model, loss_fn, x, y = tiny_classifier("relu")
    grid = [-0.8, 0.0, 0.3, 1.1]
    s = loss_surface(model, loss_fn, x, y, grid=grid, seed=2, chunk_size=chunk_size)
    assert s.loss.shape == (4, 4) and s.directions.shape == (2, flat_params(model).numel())
    d1, d2 = s.directions
    theta = flat_params(model)
    for i, a in enumerate(grid):
        for j, b in enumerate(grid):
            expected = _loss_of_model_at(model, loss_fn, x, y, theta + a * d1 + b * d2)
            assert s.loss[i, j] == pytest.approx(expected, rel=1e-5), (a, b)


def test_plane_through_three_points_maps_back():
    gen = torch.Generator().manual_seed(0)
    a, b, c = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    plane = plane_through(a, b, c)
    torch.testing.assert_close(plane.basis @ plane.basis.T, torch.eye(2, dtype=torch.float64))
    back = plane.origin + torch.as_tensor(plane.coords) @ plane.basis  # (3, P)
    torch.testing.assert_close(back, torch.stack([a, b, c]), rtol=1e-12, atol=1e-12)
    assert plane.coords[0].tolist() == [0.0, 0.0] and plane.coords[1, 1] == 0.0


def test_loss_on_plane_at_the_three_points_is_their_loss():
    model, loss_fn, x, y = tiny_classifier("relu")
    theta = flat_params(model)
    d1, d2 = random_directions(model, 2)
    thetas = [theta, theta + 0.3 * d1, theta - 0.2 * d1 + 0.4 * d2]
    plane = plane_through(*thetas)
    gx, gy = plane.coords[:, 0], plane.coords[:, 1]
    s = loss_on_plane(model, loss_fn, x, y, thetas, gx, gy)
    assert s.loss.shape == (3, 3)
    np.testing.assert_array_equal(s.points, plane.coords)
    for i, theta in enumerate(thetas):
        expected = _loss_of_model_at(model, loss_fn, x, y, theta)
        assert s.loss[i, i] == pytest.approx(expected, rel=1e-5)
    assert s.center_loss == pytest.approx(
        _loss_of_model_at(model, loss_fn, x, y, thetas[0]), rel=1e-5
    )


def test_project_onto_directions_recovers_coordinates():
    gen = torch.Generator().manual_seed(0)
    center = torch.randn(30, generator=gen, dtype=torch.float64)
    d = torch.randn(2, 30, generator=gen, dtype=torch.float64)  # not orthogonal
    coords = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    points = center + coords @ d
    got = project_onto_directions(points, center, list(d))
    np.testing.assert_allclose(got, coords.numpy(), rtol=1e-10, atol=1e-12)
    # Off-plane components are ignored (orthogonal basis: plain dot products).
    q, _ = torch.linalg.qr(d.T)
    noisy = points + 1e-3 * torch.randn(5, 30, generator=gen, dtype=torch.float64)
    np.testing.assert_allclose(
        project_onto_directions(noisy, center, q.T), ((noisy - center) @ q).numpy(), rtol=1e-10
    )


def test_model_untouched():
    model = _models()["mlp-batchnorm"]
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    loss_fn = torch.nn.functional.cross_entropy
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    dirs = random_directions(model, 2)
    filter_normalize(model, dirs[0])
    loss_surface(model, loss_fn, x, y, grid=[-1.0, 0.0, 1.0])
    loss_surface(model, loss_fn, x, y, directions=dirs[:1], grid=[0.5])
    theta = flat_params(model)
    loss_on_plane(model, loss_fn, x, y, [theta, theta + dirs[0], theta + dirs[1]], [0.0], [0.0])
    assert_untouched(model, before)


def test_bad_input():
    model, loss_fn, x, y = tiny_regression()
    p = flat_params(model).numel()
    d = torch.ones(p)
    with pytest.raises(DlprobeError, match="n must be a positive int"):
        random_directions(model, 0)
    with pytest.raises(
        DlprobeError, match=rf"direction must be a flat parameter vector of shape \({p},\)"
    ):
        filter_normalize(model, torch.ones(p + 1))
    with pytest.raises(DlprobeError, match="need 1 or 2 directions, got 3"):
        loss_surface(model, loss_fn, x, y, directions=[d, d, d])
    with pytest.raises(DlprobeError, match=r"directions\[1\] must be a flat parameter vector"):
        loss_surface(model, loss_fn, x, y, directions=[d, torch.ones(3)])
    with pytest.raises(DlprobeError, match="grid must be a non-empty 1-D"):
        loss_surface(model, loss_fn, x, y, grid=[])
    with pytest.raises(DlprobeError, match="chunk_size"):
        loss_surface(model, loss_fn, x, y, chunk_size=0)
    with pytest.raises(DlprobeError, match="same number of examples"):
        loss_surface(model, loss_fn, x, y[:2])
    with pytest.raises(DlprobeError, match="collinear"):
        plane_through(torch.zeros(4), torch.ones(4), 2 * torch.ones(4))
    with pytest.raises(DlprobeError, match="are equal"):
        plane_through(torch.ones(4), torch.ones(4), torch.zeros(4))
    with pytest.raises(DlprobeError, match="three parameter vectors"):
        loss_on_plane(model, loss_fn, x, y, [d, d], [0.0], [0.0])
    with pytest.raises(DlprobeError, match="linearly independent"):
        project_onto_directions(torch.ones(2, p), torch.zeros(p), [d, 2 * d])

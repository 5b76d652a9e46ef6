import numpy as np
import pytest
import torch
from probe_util import assert_untouched, snapshot
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.regions import (
    linear_regions,
    mean_region_size_near_anchors,
    region_sizes,
)
from dlprobe.models import MLP

# The plane through these anchors IS the input plane: (u, v) = (x_0, x_1). With the
# default extent 0.5 the window is [-0.5, 1.5]^2.
ANCHORS = [torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]


def line_arrangement(lines):
    """A 2-m-1 ReLU MLP whose hidden units switch on the lines a x_0 + b x_1 + c = 0."""
    model = MLP([2, len(lines), 1], "relu")
    with torch.no_grad():
        model.linears[0].weight.copy_(torch.tensor([[a, b] for a, b, _ in lines]))
        model.linears[0].bias.copy_(torch.tensor([c for _, _, c in lines]))
    return model


def assert_ids_match_patterns(ids: np.ndarray, patterns: np.ndarray, n_regions: int):
    """Same id <=> same pattern, and ids numbered by first occurrence (row-major)."""
    ids = ids.ravel()
    id_of = {}
    for i, pattern in zip(ids, map(tuple, patterns), strict=True):
        assert id_of.setdefault(pattern, i) == i
    assert len(id_of) == n_regions == len(set(ids.tolist()))
    _, first = np.unique(ids, return_index=True)
    assert np.all(np.diff(first) > 0) and ids[0] == 0


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # Three lines in general position, crossing inside the window: 7 regions.
        ([(1.0, 0.0, -0.503), (0.0, 1.0, -0.497), (1.0, 1.0, -1.51)], 7),
        # Three parallel lines: 4 regions.
        ([(1.0, 0.0, -0.203), (1.0, 0.0, -0.607), (1.0, 0.0, -1.109)], 4),
        # Two crossing lines and one outside the window: 4 regions in the window.
        ([(1.0, 0.0, -0.503), (0.0, 1.0, -0.497), (1.0, 0.0, -3.0)], 4),
    ],
)
def test_line_arrangement_counts_and_patterns(lines, expected):
    model = line_arrangement(lines)
    regions = linear_regions(model, *ANCHORS, resolution=120)
    assert regions.n_regions == expected
    np.testing.assert_allclose(regions.anchor_coords, [[0, 0], [1, 0], [0, 1]], atol=1e-12)
    u, v = regions.grid_coords
    np.testing.assert_allclose([u[0], u[-1], v[0], v[-1]], [-0.5, 1.5, -0.5, 1.5])
    # Sign patterns computed directly from the lines, rows of the grid being v.
    w = np.array([[a, b] for a, b, _ in lines])
    c = np.array([c for _, _, c in lines])
    vv, uu = np.meshgrid(v, u, indexing="ij")
    points = np.stack([uu.ravel(), vv.ravel()], axis=1)  # (N, 2)
    assert_ids_match_patterns(regions.region_ids, points @ w.T + c > 0, expected)
    sizes = region_sizes(regions)
    assert sizes.shape == (expected,) and sizes.sum() == 120 * 120 and sizes.min() > 0


def test_deep_net_on_a_slanted_plane_matches_a_manual_forward_pass():
    torch.manual_seed(0)
    model = MLP([3, 6, 5, 2], "leaky_relu")
    x1, x2, x3 = torch.randn(3, 3)
    regions = linear_regions(model, x1, x2, x3, resolution=60, extent=1.0)
    # Independent plane: Gram-Schmidt in numpy; anchors map back to the inputs.
    p1, p2, p3 = (t.double().numpy() for t in (x1, x2, x3))
    e1 = (p2 - p1) / np.linalg.norm(p2 - p1)
    e2 = (p3 - p1) - ((p3 - p1) @ e1) * e1
    e2 /= np.linalg.norm(e2)
    basis = np.stack([e1, e2])  # (2, 3)
    np.testing.assert_allclose(p1 + regions.anchor_coords @ basis, [p1, p2, p3], atol=1e-6)
    # Patterns by an explicit layer-by-layer forward pass.
    u, v = regions.grid_coords
    vv, uu = np.meshgrid(v, u, indexing="ij")
    h = p1 + np.stack([uu.ravel(), vv.ravel()], axis=1) @ basis  # (N, 3)
    on = []
    for lin in model.linears[:-1]:
        pre = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        on.append(pre > 0)
        h = np.where(pre > 0, pre, 0.01 * pre)
    patterns = np.concatenate(on, axis=1)
    assert_ids_match_patterns(regions.region_ids, patterns, regions.n_regions)
    assert regions.n_regions > 5


def test_mean_region_size_near_anchors_by_loops():
    lines = [(1.0, 0.0, -0.503), (0.0, 1.0, -0.497), (1.0, 1.0, -1.51)]
    regions = linear_regions(line_arrangement(lines), *ANCHORS, resolution=30)
    near, elsewhere = mean_region_size_near_anchors(regions, 0.4)
    sizes = region_sizes(regions)
    u, v = regions.grid_coords
    near_sizes, far_sizes = [], []
    for i in range(30):
        for j in range(30):
            d = min(np.hypot(u[j] - a, v[i] - b) for a, b in regions.anchor_coords)
            (near_sizes if d <= 0.4 else far_sizes).append(sizes[regions.region_ids[i, j]])
    assert near == pytest.approx(np.mean(near_sizes)) and elsewhere == pytest.approx(
        np.mean(far_sizes)
    )


def test_model_untouched_and_hooks_removed():
    torch.manual_seed(0)
    model = MLP([2, 4, 3, 2], "relu")
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    linear_regions(model, *ANCHORS, resolution=10)
    assert_untouched(model, before)
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_input():
    with pytest.raises(DlprobeError, match="module '2' is Tanh"):
        linear_regions(MLP([2, 3, 1], "tanh"), *ANCHORS)
    with pytest.raises(DlprobeError, match="module '2' is Maxout"):
        linear_regions(MLP([2, 3, 1], "maxout"), *ANCHORS)
    with pytest.raises(DlprobeError, match="no ReLU/LeakyReLU unit"):
        linear_regions(nn.Linear(2, 1), *ANCHORS)
    model = MLP([2, 3, 1], "relu")
    with pytest.raises(DlprobeError, match="collinear"):
        linear_regions(model, ANCHORS[0], ANCHORS[1], torch.tensor([2.0, 0.0]))
    with pytest.raises(DlprobeError, match="same shape"):
        linear_regions(model, ANCHORS[0], ANCHORS[1], torch.zeros(3))
    with pytest.raises(DlprobeError, match="resolution must be >= 2"):
        linear_regions(model, *ANCHORS, resolution=1)
    regions = linear_regions(model, *ANCHORS, resolution=5)
    with pytest.raises(DlprobeError, match="radius must be > 0"):
        mean_region_size_near_anchors(regions, 0.0)


class _HiddenNonlinearity(nn.Module):
    """ReLU modules, plus a non-linearity called in forward that hooks cannot see."""

    def __init__(self, hidden):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(2, 6), nn.Linear(6, 5), nn.Linear(5, 1)
        self.relu = nn.ReLU()
        self.hidden = hidden

    def forward(self, x):
        return self.c(self.relu(self.b(self.hidden(self.a(x)))))


@pytest.mark.parametrize("hidden", [torch.tanh, torch.nn.functional.relu, torch.sin])
def test_non_linearities_called_in_forward_are_refused(hidden):
    with pytest.raises(DlprobeError, match="not affine inside a region"):
        linear_regions(_HiddenNonlinearity(hidden), *ANCHORS, resolution=40)
    # an affine function in forward is fine
    linear_regions(_HiddenNonlinearity(lambda h: 2 * h - 1), *ANCHORS, resolution=40)


def test_max_pooling_splits_regions_by_its_argmax():
    torch.manual_seed(1)
    conv, lin = nn.Conv1d(1, 3, 3), nn.Linear(9, 2)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), lin)
    x1, x2, x3 = torch.randn(3, 1, 8)
    regions = linear_regions(model, x1, x2, x3, resolution=50, extent=1.0)
    # Patterns by hand: the convolution as a matrix product over sliding windows, the
    # ReLU signs, then the position of the larger of each pair (windows of 2).
    u, v = regions.grid_coords
    vv, uu = np.meshgrid(v, u, indexing="ij")
    p1, p2, p3 = (t.reshape(-1).double() for t in (x1, x2, x3))
    e1 = (p2 - p1) / (p2 - p1).norm()
    e2 = (p3 - p1) - ((p3 - p1) @ e1) * e1
    e2 = e2 / e2.norm()
    uv = torch.as_tensor(np.stack([uu.ravel(), vv.ravel()], axis=1))
    points = p1 + uv @ torch.stack([e1, e2])  # (N, 8)
    windows = points.unfold(1, 3, 1)  # (N, 6, 3)
    w = conv.weight.detach().double()[:, 0]  # (3 channels, 3)
    pre = windows @ w.T + conv.bias.detach().double()  # (N, 6, 3 channels)
    act = pre.clamp(min=0).transpose(1, 2)  # (N, 3, 6)
    argmax = act.reshape(len(points), 3, 3, 2).argmax(-1)  # (N, 3, 3) which of each pair
    patterns = np.concatenate(
        [(pre > 0).reshape(len(points), -1).numpy(), argmax.reshape(len(points), -1).numpy()],
        axis=1,
    )
    assert_ids_match_patterns(regions.region_ids, patterns, regions.n_regions)
    relu_only = np.unique((pre > 0).reshape(len(points), -1).numpy(), axis=0)
    assert regions.n_regions > len(relu_only)  # the pooling adds boundaries

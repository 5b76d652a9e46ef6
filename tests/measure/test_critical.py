import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier, tiny_regression
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.critical import critical_sample_ratio

RADIUS = 0.3


def linear_classifier() -> nn.Linear:
    # Class 1 wins where (w1 - w0) . x + (b1 - b0) = 2 x_0 - x_1 + 0.5 > 0.
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.5], [3.0, -0.5]]))
        model.bias.copy_(torch.tensor([0.25, 0.75]))
    return model


def points_with_known_distance(n: int = 300):
    """2-D points and their exact L∞ distance |w.x + b| / ||w||_1 to the boundary."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, generator=g) * 4 - 2
    dist = (2 * x[:, 0] - x[:, 1] + 0.5).abs() / 3.0
    keep = (dist - RADIUS).abs() > 0.05 * RADIUS  # not too close to the threshold
    return x[keep], dist[keep]


@pytest.mark.parametrize("batch_size", [None, 17])
def test_linear_classifier_matches_the_analytic_distance(batch_size):
    x, dist = points_with_known_distance()
    expected = dist < RADIUS
    assert 0.1 < expected.float().mean() < 0.9
    out = critical_sample_ratio(linear_classifier(), x, RADIUS, batch_size=batch_size)
    assert torch.equal(out.is_critical, expected)
    assert out.ratio == expected.float().mean().item()
    assert out.radius == RADIUS


def test_more_radius_more_critical_and_reproducible():
    model, _, x, _ = tiny_classifier(widths=(4, 16, 3), n=40)
    small = critical_sample_ratio(model, x, 0.05, restarts=2)
    large = critical_sample_ratio(model, x, 2.0, restarts=2)
    again = critical_sample_ratio(model, x, 2.0, restarts=2)
    assert small.ratio < large.ratio
    assert torch.equal(large.is_critical, again.is_critical)
    assert large.is_critical.shape == (40,) and large.is_critical.dtype == torch.bool


def test_model_untouched():
    model, _, x, _ = tiny_classifier()
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    critical_sample_ratio(model, x, 0.5)
    assert_untouched(model, before)


def test_bad_input():
    x, _ = points_with_known_distance(20)
    model = linear_classifier()
    for radius in (0.0, -1.0, float("nan")):
        with pytest.raises(DlprobeError, match="radius must be a positive finite number"):
            critical_sample_ratio(model, x, radius)
    with pytest.raises(DlprobeError, match="steps and restarts must be >= 1"):
        critical_sample_ratio(model, x, RADIUS, steps=0)
    with pytest.raises(DlprobeError, match="step_size must be > 0"):
        critical_sample_ratio(model, x, RADIUS, step_size=0.0)
    regression, _, xr, _ = tiny_regression()
    with pytest.raises(DlprobeError, match="class logits \\(n, C\\) with C >= 2, got \\(16, 1\\)"):
        critical_sample_ratio(regression, xr, RADIUS)
    with pytest.raises(DlprobeError, match="floating point"):
        critical_sample_ratio(model, torch.ones(3, 2, dtype=torch.long), RADIUS)

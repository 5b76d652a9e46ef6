import copy
import math

import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier
from torch.nn.utils import vector_to_parameters

from dlprobe import DlprobeError
from dlprobe.measure import pac_bayes_flatness
from dlprobe.measure._functional import flat_params


def error(output, target):
    return (output.argmax(-1) != target).to(output.dtype).mean()


def brute_rise(model, loss_fn, x, y, sigma, samples, seed):
    """Mean loss rise under the same seeded draws, one perturbed copy of the model at a time."""
    gen = torch.Generator().manual_seed(seed)
    theta = flat_params(model, torch.float64)
    z = torch.randn(samples, theta.numel(), generator=gen, dtype=torch.float64)
    copy64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        base = loss_fn(copy64(x.double()), y).item()
        losses = []
        for z_s in z:
            vector_to_parameters(theta + sigma * z_s, copy64.parameters())
            losses.append(loss_fn(copy64(x.double()), y).item())
    return sum(losses) / len(losses) - base


@pytest.mark.parametrize("loss_name", ["cross_entropy", "error"])
def test_sigma_is_the_largest_scale_within_the_rise_by_brute_force(loss_name):
    model, cross_entropy, x, _ = tiny_classifier(widths=(4, 8, 3), n=24)
    loss_fn = cross_entropy if loss_name == "cross_entropy" else error
    with torch.no_grad():
        y = model(x).argmax(-1)  # the model's own labels: error 0, so noise can raise it
    w0 = flat_params(model) + 0.1
    before = snapshot(model)
    r = pac_bayes_flatness(
        model, loss_fn, x, y, initial=w0, n_train=100, max_rise=0.05, samples=6, seed=3
    )
    assert_untouched(model, before)
    assert r.within_range
    assert r.sigma < r.sigma_above <= r.sigma * 1.001  # 30 halvings of (1e-5, 10) in log
    assert brute_rise(model, loss_fn, x, y, r.sigma, 6, 3) <= 0.05
    assert brute_rise(model, loss_fn, x, y, r.sigma_above, 6, 3) > 0.05
    assert r.expected_rise == pytest.approx(brute_rise(model, loss_fn, x, y, r.sigma, 6, 3))
    distance = (flat_params(model, torch.float64) - w0.double()).norm().item()
    assert r.distance == pytest.approx(distance, rel=1e-12)
    assert r.flatness == pytest.approx(1 / r.sigma**2)
    expected = distance**2 / (4 * r.sigma**2) + math.log(100 / r.sigma) + 10
    assert r.bound == pytest.approx(expected, rel=1e-12)


def test_quadratic_loss_gives_the_closed_form_sigma():
    """For L = 0.5 |theta|^2 the rise is sigma^2 |z|^2 / 2 exactly (the cross term averages to
    the mean of theta . z, included here): sigma solves a quadratic equation."""

    class Norm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))

        def forward(self, x):
            return (0.5 * (self.theta**2).sum()).expand(x.shape[0])

    model, x = Norm(), torch.zeros(2, 1, dtype=torch.float64)
    r = pac_bayes_flatness(
        model, lambda out, _y: out.mean(), x, torch.zeros(2), initial=torch.zeros(3),
        n_train=10, max_rise=0.02, samples=5, seed=1, bisection_steps=60,
    )  # fmt: skip
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a, b = 0.5 * (z**2).sum(1).mean().item(), (z @ model.theta.detach()).mean().item()
    sigma = (-b + math.sqrt(b * b + 4 * a * 0.02)) / (2 * a)  # a s^2 + b s = 0.02
    assert r.sigma == pytest.approx(sigma, rel=1e-9)


def test_flatter_minimum_tolerates_more_noise_and_scaling_changes_sigma():
    model, loss_fn, x, y = tiny_classifier(widths=(4, 8, 3), n=24)
    w0 = flat_params(model)
    sharp = copy.deepcopy(model)
    with torch.no_grad():
        for p in sharp.parameters():
            p.mul_(3.0)  # larger weights: the same noise moves the logits more
    kw = dict(initial=w0, n_train=24, max_rise=0.05, samples=4)
    assert (
        pac_bayes_flatness(sharp, loss_fn, x, y, **kw).sigma
        < pac_bayes_flatness(model, loss_fn, x, y, **kw).sigma
    )


def test_range_ends_are_reported():
    model, loss_fn, x, y = tiny_classifier(widths=(4, 8, 3), n=24)
    w0 = flat_params(model)
    huge = pac_bayes_flatness(model, loss_fn, x, y, initial=w0, n_train=24, max_rise=1e6)
    assert not huge.within_range and huge.sigma == 10.0 and math.isinf(huge.sigma_above)
    tiny = pac_bayes_flatness(
        model, loss_fn, x, y, initial=w0, n_train=24, max_rise=1e-12, sigma_range=(0.5, 1.0)
    )
    assert not tiny.within_range and tiny.sigma == 0.5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_rise": 0.0}, "max_rise"),
        ({"samples": 0}, "samples"),
        ({"n_train": 0}, "n_train"),
        ({"sigma_range": (1.0, 0.5)}, "sigma_range"),
        ({"initial": torch.zeros(3)}, "initial must hold"),
    ],
)
def test_bad_input_is_refused(changes, message):
    model, loss_fn, x, y = tiny_classifier(widths=(4, 8, 3), n=24)
    kw = {"initial": flat_params(model), "n_train": 24, **changes}
    with pytest.raises(DlprobeError, match=message):
        pac_bayes_flatness(model, loss_fn, x, y, **kw)

"""Gradient norms against loss.backward() on deep copies, one model at a time."""

import pytest
import torch
from probe_util import assert_untouched, copy_model, snapshot, tiny_classifier, tiny_regression
from torch.func import stack_module_state

from dlprobe import DlprobeError
from dlprobe.measure.gradient import gradient_norm, population_gradient_norm, population_loss
from dlprobe.models import MLP

PROBLEMS = {
    "regression-tanh": lambda: tiny_regression("tanh"),
    "regression-cos": lambda: tiny_regression("cos"),
    "classifier-relu": lambda: tiny_classifier("relu"),
}


def brute_grad_norm(model, loss_fn, x, y) -> float:
    m = copy_model(model).eval()
    m.zero_grad()
    loss_fn(m(x), y).backward()
    return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in m.parameters())))


def brute_loss(model, loss_fn, x, y) -> float:
    with torch.no_grad():
        return float(loss_fn(copy_model(model).eval()(x), y))


def population(widths, activation, k, batch_norm=False):
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(MLP(widths, activation, batch_norm=batch_norm))
    return models


@pytest.mark.parametrize("name", PROBLEMS)
def test_gradient_norm_matches_backward(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    # float32 on both sides; relative 1e-5 covers the different summation order
    assert gradient_norm(model, loss_fn, x, y) == pytest.approx(
        brute_grad_norm(model, loss_fn, x, y), rel=1e-5
    )


def test_gradient_norm_leaves_model_untouched():
    model, loss_fn, x, y = tiny_regression()
    loss_fn(model(x), y).backward()  # a .grad that the probe must not change
    model.train()
    before = snapshot(model)
    gradient_norm(model, loss_fn, x, y)
    assert_untouched(model, before)


def test_gradient_norm_rejects_bad_input():
    model, loss_fn, x, y = tiny_regression()
    with pytest.raises(DlprobeError, match="same number of examples"):
        gradient_norm(model, loss_fn, x, y[:-1])
    with pytest.raises(DlprobeError, match="x must be a torch.Tensor"):
        gradient_norm(model, loss_fn, x.tolist(), y)
    frozen = copy_model(model).requires_grad_(False)
    with pytest.raises(DlprobeError, match="no trainable parameters"):
        gradient_norm(frozen, loss_fn, x, y)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_population_matches_per_model(activation):
    _, loss_fn, x, y = tiny_regression()
    models = population([1, 6, 5, 1], activation, k=4)
    params, _ = stack_module_state(models)
    base = copy_model(models[0]).to("meta")  # the values of the base model are never read
    norms = population_gradient_norm(base, params, loss_fn, x, y)
    losses = population_loss(base, params, loss_fn, x, y)
    assert norms.shape == losses.shape == (4,)
    for k, m in enumerate(models):
        assert float(norms[k]) == pytest.approx(gradient_norm(m, loss_fn, x, y), rel=1e-5)
        assert float(losses[k]) == pytest.approx(brute_loss(m, loss_fn, x, y), rel=1e-6)


def test_population_uses_stacked_buffers():
    """BatchNorm running statistics differ per model; in eval mode they are buffers."""
    _, loss_fn, x, y = tiny_regression()
    models = population([1, 6, 1], "tanh", k=3, batch_norm=True)
    for k, m in enumerate(models):
        m[2].running_mean.fill_(0.1 * k)
        m[2].running_var.fill_(1.0 + k)
    params, buffers = stack_module_state(models)
    base = copy_model(models[0]).to("meta")
    norms = population_gradient_norm(base, params, loss_fn, x, y, stacked_buffers=buffers)
    for k, m in enumerate(models):
        assert float(norms[k]) == pytest.approx(brute_grad_norm(m, loss_fn, x, y), rel=1e-5)
    # default: the base model's own buffers, shared by every model
    shared = population_loss(models[0], params, loss_fn, x, y)
    for k, m in enumerate(models):
        m.load_state_dict({**m.state_dict(), **dict(models[0].named_buffers())})
        assert float(shared[k]) == pytest.approx(brute_loss(m, loss_fn, x, y), rel=1e-6)


def test_population_leaves_everything_untouched():
    _, loss_fn, x, y = tiny_regression()
    models = population([1, 6, 5, 1], "tanh", k=3)
    params, _ = stack_module_state(models)
    base = models[0]
    loss_fn(base(x), y).backward()
    base.train()
    before = snapshot(base)
    stacked_before = {n: p.detach().clone() for n, p in params.items()}
    population_gradient_norm(base, params, loss_fn, x, y)
    population_loss(base, params, loss_fn, x, y)
    assert_untouched(base, before)
    for n, p in params.items():
        assert torch.equal(p, stacked_before[n]) and p.grad is None


def test_population_rejects_bad_input():
    _, loss_fn, x, y = tiny_regression()
    models = population([1, 6, 5, 1], "tanh", k=3)
    params, _ = stack_module_state(models)
    base = models[0]
    with pytest.raises(DlprobeError, match="missing"):
        population_gradient_norm(base, {"1.weight": params["1.weight"]}, loss_fn, x, y)
    wrong_k = {**params, "1.bias": params["1.bias"][:2]}
    with pytest.raises(DlprobeError, match="K=3"):
        population_gradient_norm(base, wrong_k, loss_fn, x, y)
    with pytest.raises(DlprobeError, match="non-empty dict"):
        population_loss(base, {}, loss_fn, x, y)
    with pytest.raises(DlprobeError, match="same number of examples"):
        population_loss(base, params, loss_fn, x, y[:3])
    bn = population([1, 6, 1], "tanh", k=2, batch_norm=True)
    bn_params, bn_buffers = stack_module_state(bn)
    meta = copy_model(bn[0]).to("meta")
    with pytest.raises(DlprobeError, match="pass stacked_buffers"):
        population_loss(meta, bn_params, loss_fn, x, y)
    with pytest.raises(DlprobeError, match="leading axis of K=2"):
        bad = {n: b[0] if b.ndim else b for n, b in bn_buffers.items()}
        population_loss(meta, bn_params, loss_fn, x, y, stacked_buffers=bad)
    with pytest.raises(DlprobeError, match="exactly the buffers"):
        population_loss(meta, bn_params, loss_fn, x, y, stacked_buffers={})

"""Exact Hessians against torch.autograd.functional.hessian of a hand-written MLP loss."""

import pytest
import torch
import torch.nn.functional as F
from probe_util import assert_untouched, copy_model, snapshot, tiny_regression
from torch.func import stack_module_state

from dlprobe import DlprobeError
from dlprobe.measure.hessian import (
    hessian,
    hessian_eigenvalues,
    population_hessian,
    population_hessian_eigenvalues,
)
from dlprobe.measure.minimal_ratio import minimal_ratio

ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "cos": torch.cos,
    "relu": torch.relu,
    "elu": F.elu,
}
WIDTHS = (1, 6, 5, 1)


def manual_mse(theta, widths, act, x, y):
    """The MLP's MSE written out by hand on a flat vector (weights then bias per layer)."""
    h, i = x, 0
    for layer, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        w = theta[i : i + n_in * n_out].reshape(n_out, n_in)
        i += n_in * n_out
        b = theta[i : i + n_out]
        i += n_out
        h = h @ w.T + b
        if layer < len(widths) - 2:
            h = act(h)
    return ((h - y) ** 2).mean()


def brute_hessian(model, activation, x, y):
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    return torch.autograd.functional.hessian(
        lambda t: manual_mse(t, WIDTHS, ACTIVATIONS[activation], x.double(), y.double()), theta
    )


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_hessian_matches_autograd(activation):
    model, loss_fn, x, y = tiny_regression(activation, widths=WIDTHS)
    h = hessian(model, loss_fn, x, y)
    expected = brute_hessian(model, activation, x, y)
    assert h.dtype == torch.float64 and h.shape == expected.shape == (53, 53)
    torch.testing.assert_close(h, expected, rtol=1e-10, atol=1e-12)
    lam = hessian_eigenvalues(model, loss_fn, x, y)
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(expected), rtol=1e-9, atol=1e-12)
    assert torch.all(lam[1:] >= lam[:-1])


@pytest.mark.parametrize("activation", ["tanh", "cos"])
def test_float32_path_agrees_with_float64(activation):
    model, loss_fn, x, y = tiny_regression(activation, widths=WIDTHS)
    h64 = hessian(model, loss_fn, x, y)
    h32 = hessian(model, loss_fn, x, y, dtype=torch.float32)
    assert h32.dtype == torch.float32
    # float32 round-off relative to the largest entry
    scale = float(h64.abs().max())
    torch.testing.assert_close(h32.double(), h64, rtol=0, atol=1e-5 * scale)


def test_dead_relu_units_give_zero_rows_counted_as_zero_eigenvalues():
    model, loss_fn, x, y = tiny_regression("relu", widths=WIDTHS)
    with torch.no_grad():
        model[1].bias[:3] = -10.0  # |w x| <= 1 on x in [-1, 1]: units 0-2 never fire
    h = hessian(model, loss_fn, x, y)
    # dead unit j: row j of W1 (1 weight), b1[j], column j of W2 (5 weights) -> 7 each
    dead = torch.zeros(53, dtype=torch.bool)
    dead[[0, 1, 2]] = True  # W1[j, 0]
    dead[[6, 7, 8]] = True  # b1[j]
    for j in range(3):
        dead[12 + torch.arange(5) * 6 + j] = True  # W2[:, j], W2 has shape (5, 6)
    assert torch.all(h[dead] == 0) and torch.all(h[:, dead] == 0)
    # other units may be inactive on this data too: all exactly-zero rows are flat directions
    n_zero_rows = int((h == 0).all(dim=1).sum())
    lam = hessian_eigenvalues(model, loss_fn, x, y)
    ratio = minimal_ratio(lam)
    # each zero row/column gives an eigenvalue 0 (up to round-off): counted as zero,
    # never as positive or negative by the sign of its round-off
    assert ratio.zero * ratio.n >= n_zero_rows >= int(dead.sum()) == 21
    assert ratio.positive == pytest.approx(int((lam > ratio.tol).sum()) / 53)
    assert ratio.positive + ratio.zero + ratio.negative == pytest.approx(1.0)


def make_population(activation="tanh", k=5):
    models = []
    for seed in range(k):
        models.append(tiny_regression(activation, widths=WIDTHS, seed=seed)[0])
    return models


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_population_hessian_matches_loop(activation):
    _, loss_fn, x, y = tiny_regression(activation, widths=WIDTHS)
    models = make_population(activation)
    params, buffers = stack_module_state(models)
    base = copy_model(models[0]).to("meta")
    h = population_hessian(base, params, loss_fn, x, y, stacked_buffers=buffers, chunk_size=2)
    h_all = population_hessian(
        base, params, loss_fn, x, y, stacked_buffers=buffers, chunk_size=None
    )
    lam = population_hessian_eigenvalues(base, params, loss_fn, x, y, stacked_buffers=buffers)
    assert h.shape == (5, 53, 53) and lam.shape == (5, 53)
    torch.testing.assert_close(h, h_all, rtol=1e-12, atol=1e-14)
    for k, m in enumerate(models):
        torch.testing.assert_close(h[k], hessian(m, loss_fn, x, y), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            lam[k], hessian_eigenvalues(m, loss_fn, x, y), rtol=1e-9, atol=1e-12
        )


def test_hessian_probes_leave_model_untouched():
    model, loss_fn, x, y = tiny_regression("tanh", widths=WIDTHS)
    loss_fn(model(x), y).backward()
    model.train()
    before = snapshot(model)
    hessian(model, loss_fn, x, y)
    hessian_eigenvalues(model, loss_fn, x, y)
    assert_untouched(model, before)
    assert next(model.parameters()).dtype == torch.float32


def test_population_hessian_leaves_everything_untouched():
    _, loss_fn, x, y = tiny_regression()
    models = make_population(k=3)
    params, _ = stack_module_state(models)
    base = models[0]
    loss_fn(base(x), y).backward()
    base.train()
    before = snapshot(base)
    stacked_before = {n: p.detach().clone() for n, p in params.items()}
    population_hessian_eigenvalues(base, params, loss_fn, x, y)
    assert_untouched(base, before)
    for n, p in params.items():
        assert torch.equal(p, stacked_before[n]) and p.grad is None


def test_hessian_rejects_bad_input():
    model, loss_fn, x, y = tiny_regression()
    with pytest.raises(DlprobeError, match="same number of examples"):
        hessian(model, loss_fn, x, y[:5])
    with pytest.raises(DlprobeError, match="floating torch.dtype"):
        hessian(model, loss_fn, x, y, dtype=torch.int64)
    with pytest.raises(DlprobeError, match="non-empty batch"):
        hessian_eigenvalues(model, loss_fn, x[:0], y[:0])
    params, _ = stack_module_state(make_population(k=2))
    with pytest.raises(DlprobeError, match="chunk_size"):
        population_hessian(model, params, loss_fn, x, y, chunk_size=0)
    with pytest.raises(DlprobeError, match="shape"):
        bad = {**params, "1.weight": params["1.weight"][:, :2]}
        population_hessian_eigenvalues(model, bad, loss_fn, x, y)


def test_chunks_parameter_blocks_and_eigenvectors():
    model, loss_fn, x, y = tiny_regression("tanh", widths=WIDTHS)
    expected = brute_hessian(model, "tanh", x, y)  # (53, 53)
    for chunk in (1, 5, None):
        h = hessian(model, loss_fn, x, y, chunk_size=chunk)
        torch.testing.assert_close(h, expected, rtol=1e-10, atol=1e-12)
    # layer 2 (6 -> 5): weight entries 12..41 of the flat vector, bias 42..46
    block = hessian(model, loss_fn, x, y, params=["3.bias", "3.weight"])
    torch.testing.assert_close(block, expected[12:47, 12:47], rtol=1e-10, atol=1e-12)
    lam, vectors = hessian_eigenvalues(model, loss_fn, x, y, return_eigenvectors=True)
    torch.testing.assert_close(expected @ vectors, vectors * lam, rtol=0, atol=1e-10)
    with pytest.raises(DlprobeError, match=r"params \['fc.weight'\] are not parameters"):
        hessian(model, loss_fn, x, y, params=["fc.weight"])
    with pytest.raises(DlprobeError, match="list of parameter names"):
        hessian(model, loss_fn, x, y, params="3.weight")
    with pytest.raises(DlprobeError, match="chunk_size"):
        hessian(model, loss_fn, x, y, chunk_size=0)

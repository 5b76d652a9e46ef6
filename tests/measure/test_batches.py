"""Data as batches: every loss-based probe on two batches equals it on their concatenation;
bad losses and data are refused with a message."""

import pytest
import torch
import torch.nn.functional as F
from probe_util import tiny_classifier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlprobe import DlprobeError, measure
from dlprobe.measure._batches import as_batches

PROBES = {
    "gradient_norm": lambda m, loss, *d: measure.gradient_norm(m, loss, *d),
    "hessian": lambda m, loss, *d: measure.hessian(m, loss, *d),
    "hessian_eigenvalues": lambda m, loss, *d: measure.hessian_eigenvalues(m, loss, *d),
    "top_hessian_eigenvalues": lambda m, loss, *d: measure.top_hessian_eigenvalues(
        m, loss, *d, k=3, which="LM"
    ),
    "hessian_trace": lambda m, loss, *d: measure.hessian_trace(m, loss, *d, n_samples=6).estimate,
    "hessian_spectral_density": lambda m, loss, *d: measure.hessian_spectral_density(
        m, loss, *d, n_probes=2, lanczos_steps=6
    )[1],
    "sharpness-keskar": lambda m, loss, *d: measure.sharpness(m, loss, *d, steps=3).value,
    "sharpness-ball": lambda m, loss, *d: (
        measure.sharpness(m, loss, *d, method="ball", epsilon=1e-2, steps=3).value
    ),
    "sharpness-hessian": lambda m, loss, *d: measure.sharpness(m, loss, *d, method="hessian").value,
    "valley_width": lambda m, loss, *d: (
        measure.valley_width(m, loss, *d, height=0.05, n_directions=2, scan_points=8).widths
    ),
    "minimal_ratio_by_sampling": lambda m, loss, *d: (
        measure.minimal_ratio_by_sampling(m, loss, *d, n_samples=50, radius=0.5).higher
    ),
}


@pytest.fixture(scope="module")
def problem():
    """4-8-3 tanh classifier (67 parameters) on 24 points, in float64."""
    model, loss_fn, x, y = tiny_classifier("tanh")
    return model.double(), loss_fn, x.double(), y


def _close(a, b):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(PROBES))
def test_two_batches_equal_one_concatenated_batch(problem, name):
    model, loss_fn, x, y = problem
    whole = PROBES[name](model, loss_fn, x, y)
    # unequal batches: a plain mean of the batch means would be wrong
    split = [(x[:7], y[:7]), (x[7:], y[7:])]
    _close(PROBES[name](model, loss_fn, split), whole)
    _close(PROBES[name](model, loss_fn, (x, y)), whole)  # one batch as a pair


def test_a_data_loader_is_read_batch_by_batch(problem):
    model, loss_fn, x, y = problem
    loader = DataLoader(TensorDataset(x, y), batch_size=5)  # 5 batches, the last of 4
    _close(measure.hessian(model, loss_fn, loader), measure.hessian(model, loss_fn, x, y))
    dropped = DataLoader(TensorDataset(x, y), batch_size=5, drop_last=True)
    assert as_batches(model, dropped, None).n == 20
    _close(
        measure.gradient_norm(model, loss_fn, dropped),
        measure.gradient_norm(model, loss_fn, x[:20], y[:20]),
    )


def test_sum_reduction_adds_batches(problem):
    model, _, x, y = problem
    split = [(x[:10], y[:10]), (x[10:], y[10:])]
    h_sum = measure.hessian(model, nn.CrossEntropyLoss(reduction="sum"), split)
    _close(h_sum, len(x) * measure.hessian(model, F.cross_entropy, x, y))


def test_batches_move_to_the_model_device_and_dtype(problem):
    model, loss_fn, x, y = problem
    batches = as_batches(model, [(x.float(), y)], None, torch.float64)
    ((xb, yb),) = list(batches)
    assert xb.dtype == torch.float64 and yb.dtype == torch.int64 and batches.n == len(x)


def test_bad_losses_and_data_are_refused(problem):
    model, loss_fn, x, y = problem
    with pytest.raises(DlprobeError, match=r"not the class CrossEntropyLoss"):
        measure.gradient_norm(model, nn.CrossEntropyLoss, x, y)
    with pytest.raises(DlprobeError, match="reduction='none'"):
        measure.hessian_trace(model, nn.CrossEntropyLoss(reduction="none"), x, y)
    per_example = lambda out, t: F.cross_entropy(out, t, reduction="none")  # noqa: E731
    for probe in (measure.gradient_norm, measure.hessian, measure.top_hessian_eigenvalues):
        with pytest.raises(DlprobeError, match="must return a scalar"):
            probe(model, per_example, x, y)
    with pytest.raises(DlprobeError, match="one-shot iterator"):
        measure.gradient_norm(model, loss_fn, ((x, y) for _ in range(2)))
    with pytest.raises(DlprobeError, match="batch 1 must be a pair"):
        measure.gradient_norm(model, loss_fn, [(x, y), x])
    with pytest.raises(DlprobeError, match="batch 0 must hold n >= 1 examples"):
        measure.gradient_norm(model, loss_fn, [(x, y[:3])])
    with pytest.raises(DlprobeError, match="y is missing"):
        measure.gradient_norm(model, loss_fn, x)
    with pytest.raises(DlprobeError, match="leave y out"):
        measure.gradient_norm(model, loss_fn, [(x, y)], y)
    with pytest.raises(DlprobeError, match="no examples"):
        measure.gradient_norm(model, loss_fn, [])
    # float32 inputs to a float64 model, computing in the model's own dtype
    with pytest.raises(DlprobeError, match="inputs are torch.float32 but the model's"):
        measure.gradient_norm(model, loss_fn, x.float(), y)
    assert measure.gradient_norm(model, loss_fn, x.float(), y, dtype=torch.float64) > 0

"""Every probe on CUDA: same numbers as on the CPU, model untouched, results where
documented. Skipped without a CUDA device (marker ``cuda``)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from probe_util import assert_untouched, snapshot, tiny_classifier
from test_purity import PROBES, _classifier
from torch.utils.data import DataLoader, TensorDataset

from dlprobe import DlprobeError, measure
from dlprobe.models import MLP

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


@pytest.mark.parametrize("name", list(PROBES))
def test_probe_runs_on_cuda_and_leaves_the_model_untouched(name):
    model, x, y = _classifier()
    model, x, y = model.to(CUDA), x.to(CUDA), y.to(CUDA)
    before = snapshot(model)
    PROBES[name](model, x, y)
    assert_untouched(model, before)


def _both(model, x, y):
    """(CPU problem, CUDA problem): float64 copies, so the two agree to round-off."""
    cpu = (copy.deepcopy(model).double(), x.double(), y)
    return cpu, (copy.deepcopy(cpu[0]).to(CUDA), cpu[1].to(CUDA), y.to(CUDA))


@pytest.mark.parametrize(
    "probe",
    [
        lambda m, x, y: measure.gradient_norm(m, F.cross_entropy, x, y),
        lambda m, x, y: measure.hessian(m, F.cross_entropy, x, y),
        lambda m, x, y: measure.hessian_eigenvalues(m, F.cross_entropy, x, y),
        lambda m, x, y: measure.top_hessian_eigenvalues(m, F.cross_entropy, x, y, k=3),
        lambda m, x, y: measure.sharpness(m, F.cross_entropy, x, y, method="ball", steps=5).value,
        lambda m, x, y: measure.sharpness(m, F.cross_entropy, x, y, method="hessian").value,
        lambda m, x, y: measure.valley_width(m, F.cross_entropy, x, y, height=0.1).widths,
        lambda m, x, y: measure.sensitivity(m, x, y, F.cross_entropy).per_example,
        lambda m, x, y: measure.linear_regions(m, x[0], x[1], x[2], resolution=30).region_ids,
    ],
)
def test_cuda_agrees_with_cpu(probe):
    model, loss_fn, x, y = tiny_classifier("relu", widths=(4, 8, 3))
    (m_cpu, x_cpu, y_cpu), (m_gpu, x_gpu, y_gpu) = _both(model, x, y)
    on_cpu, on_gpu = probe(m_cpu, x_cpu, y_cpu), probe(m_gpu, x_gpu, y_gpu)
    if isinstance(on_gpu, torch.Tensor) and on_gpu.ndim:
        on_gpu = on_gpu.cpu()
    torch.testing.assert_close(
        torch.as_tensor(on_gpu), torch.as_tensor(on_cpu), rtol=1e-8, atol=1e-10
    )


def test_trace_density_and_eigenvectors_on_cuda():
    model, loss_fn, x, y = tiny_classifier("tanh", widths=(4, 16, 10, 3), n=64)
    (m_cpu, x_cpu, y_cpu), (m, xg, yg) = _both(model, x, y)
    exact = float(torch.linalg.eigvalsh(measure.hessian(m_cpu, loss_fn, x_cpu, y_cpu)).sum())
    est = measure.hessian_trace(m, loss_fn, xg, yg, n_samples=500, seed=1)
    assert abs(est.estimate - exact) < 4 * est.stderr  # probes drawn on the GPU
    values, vectors = measure.top_hessian_eigenvalues(
        m, loss_fn, xg, yg, k=2, return_eigenvectors=True
    )
    assert values.device.type == "cpu" and vectors.device.type == "cuda"
    h = measure.hessian(m, loss_fn, xg, yg)
    assert h.device.type == "cuda"
    torch.testing.assert_close(h @ vectors, vectors * values.to(CUDA), rtol=0, atol=1e-8)
    grid, density = measure.hessian_spectral_density(
        m, loss_fn, xg, yg, n_probes=2, lanczos_steps=20
    )
    assert grid.device.type == "cpu" and density.isfinite().all()


def test_cpu_batches_move_to_a_cuda_model_but_cpu_tensors_are_refused():
    model, loss_fn, x, y = tiny_classifier("tanh")
    gpu = copy.deepcopy(model).to(CUDA)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)  # CPU batches
    assert measure.gradient_norm(gpu, loss_fn, loader) == pytest.approx(
        measure.gradient_norm(model, loss_fn, x, y), rel=1e-5
    )
    with pytest.raises(DlprobeError, match="model is on cuda:0 but x is on cpu"):
        measure.gradient_norm(gpu, loss_fn, x, y)


def test_interpolate_recomputes_batchnorm_statistics_on_cuda():
    torch.manual_seed(0)
    a, b = (MLP([4, 8, 3], "relu", batch_norm=True) for _ in range(2))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))

    def run(device):
        return measure.interpolate(
            copy.deepcopy(a).to(device),
            copy.deepcopy(b).to(device),
            [0.0, 0.5],
            lambda m: measure.classification_metrics(m, x.to(device), y.to(device)),
            batchnorm_data=x,  # on the CPU: moved to the model's device
        )

    for on_gpu, on_cpu in zip(run(CUDA), run("cpu"), strict=True):
        assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=1e-4)

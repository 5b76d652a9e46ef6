"""Thick-restart Lanczos against torch.linalg.eigh of explicit symmetric matrices."""

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.measure._lanczos import lanczos_eigenpairs


def _matrix(eigenvalues, seed=0):
    """Q diag(eigenvalues) Q^T with a random orthogonal Q (float64)."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=gen, dtype=torch.float64))
    return q @ torch.diag(lam) @ q.T


def _start(p, dtype=torch.float64):
    return torch.randn(p, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("ncv", [12, 16, None])  # 12 and 16 force restarts
def test_extreme_eigenpairs_with_restarts(which, ncv):
    gen = torch.Generator().manual_seed(2)
    lam = torch.cat([torch.randn(150, generator=gen), torch.tensor([4.0, -3.5, 3.2])])
    a = _matrix(lam)
    exact = torch.linalg.eigvalsh(a)  # ascending
    expected = {"LA": exact.flip(0), "SA": exact, "LM": exact[exact.abs().argsort(descending=True)]}
    values, vectors, products = lanczos_eigenpairs(a.__matmul__, _start(153), 4, which, ncv=ncv)
    torch.testing.assert_close(values, expected[which][:4], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a @ vectors, vectors * values, rtol=0, atol=1e-9)
    torch.testing.assert_close(
        vectors.T @ vectors, torch.eye(4, dtype=torch.float64), atol=1e-10, rtol=0
    )
    assert 4 < products < 153 * 4
    if ncv is not None:
        assert products > ncv  # restarted at least once


def test_loose_tolerance_stops_early_within_it():
    a = _matrix(torch.linspace(0, 1, 300) ** 4)
    exact = float(torch.linalg.eigvalsh(a)[-1])
    _, _, tight = lanczos_eigenpairs(a.__matmul__, _start(300), 1, "LA", tol=0)
    value, _, loose = lanczos_eigenpairs(a.__matmul__, _start(300), 1, "LA", tol=1e-3)
    assert loose < tight
    assert float(value[0]) == pytest.approx(exact, rel=1e-3)


def test_float32_converges_at_its_own_precision():
    a = _matrix(torch.linspace(-1, 2, 100))
    exact = torch.linalg.eigvalsh(a).flip(0)[:2]
    a32 = a.float()
    values, vectors, _ = lanczos_eigenpairs(a32.__matmul__, _start(100, torch.float32), 2, tol=3e-4)
    assert vectors.dtype == torch.float32
    torch.testing.assert_close(values, exact, rtol=1e-4, atol=0)


def test_invariant_subspace_and_small_operators():
    # a start vector inside a 2-dimensional eigenspace: the Krylov space is exhausted
    # after 2 products and Lanczos must go on from a fresh direction
    lam = torch.tensor([5.0, 1.0, 2.0, 3.0, 4.0, 0.5], dtype=torch.float64)
    a = torch.diag(lam)
    v0 = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    values, _, _ = lanczos_eigenpairs(
        a.__matmul__, v0, 3, "LA", ncv=6, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(values, torch.tensor([5.0, 4.0, 3.0], dtype=torch.float64))
    eye = 2.0 * torch.eye(5, dtype=torch.float64)  # every vector an eigenvector
    values, _, products = lanczos_eigenpairs(eye.__matmul__, _start(5), 1, "LA")
    assert float(values[0]) == pytest.approx(2.0) and products == 1


def test_no_convergence_and_bad_ncv_are_reported():
    a = _matrix(torch.linspace(0, 1, 400))  # evenly spaced: slow for Lanczos
    with pytest.raises(DlprobeError, match="did not converge within maxiter=1 restarts"):
        lanczos_eigenpairs(a.__matmul__, _start(400), 5, "LA", ncv=8, maxiter=1)
    with pytest.raises(DlprobeError, match="ncv must satisfy"):
        lanczos_eigenpairs(a.__matmul__, _start(400), 5, "LA", ncv=5)

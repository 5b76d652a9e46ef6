import numpy as np
import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.measure.trajectories import project_trajectories


def random_walk(steps: int, n_params: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(steps, n_params)), axis=0)  # (T, P)


def test_translated_runs_keep_their_offset_in_the_common_basis():
    # Run B is run A shifted by a constant vector c. In one common basis B's coordinates
    # are A's plus the (constant) projection of c; a PCA fitted per run would give both
    # runs the same coordinates, and this test would fail.
    run_a = random_walk(12, 30, seed=0)
    c = np.random.default_rng(1).normal(size=30) * 5.0
    run_b = run_a + c
    proj = project_trajectories([run_a, torch.tensor(run_b)], n_components=2)

    offset = proj.coords[1] - proj.coords[0]  # (T, 2)
    np.testing.assert_allclose(offset, offset[:1].repeat(12, axis=0), atol=1e-9)
    assert np.linalg.norm(offset[0]) > 1.0

    # Independent check: numpy SVD of the centred stacked data.
    stacked = np.concatenate([run_a, run_b])
    centred = stacked - stacked.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T  # (2T, 2), each column defined up to sign
    got = np.concatenate(proj.coords)
    signs = np.sign(np.sum(got * expected, axis=0))
    np.testing.assert_allclose(got, expected * signs, atol=1e-9)
    np.testing.assert_allclose(offset[0], (vt[:2] @ c) * signs, atol=1e-9)
    np.testing.assert_allclose(proj.explained_variance_ratio, s[:2] ** 2 / np.sum(s**2), rtol=1e-9)
    assert proj.method == "pca"


def test_runs_of_different_lengths_come_back_in_input_order():
    runs = [random_walk(t, 8, seed=t) for t in (3, 7, 5)]
    proj = project_trajectories(runs, n_components=3)
    assert [c.shape for c in proj.coords] == [(3, 3), (7, 3), (5, 3)]
    # Splitting the single fit back per run: each block matches the stacked transform.
    stacked = np.concatenate(runs)
    centred = stacked - stacked.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred[3:10] @ vt[:3].T
    signs = np.sign(np.sum(proj.coords[1] * expected, axis=0))
    np.testing.assert_allclose(proj.coords[1], expected * signs, atol=1e-9)


def test_pca_then_tsne_is_finite_and_reproducible():
    runs = [random_walk(10, 20, seed=s) + 10 * s for s in range(3)]
    first = project_trajectories(runs, method="pca+tsne", pca_components_before_tsne=5, seed=3)
    again = project_trajectories(runs, method="pca+tsne", pca_components_before_tsne=5, seed=3)
    assert [c.shape for c in first.coords] == [(10, 2)] * 3
    assert all(np.isfinite(c).all() for c in first.coords)
    for a, b in zip(first.coords, again.coords, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.explained_variance_ratio.shape == (5,)
    assert first.method == "pca+tsne"


def test_tiny_input_clips_perplexity():
    runs = [random_walk(2, 4, seed=0), random_walk(2, 4, seed=1)]
    proj = project_trajectories(runs, method="pca+tsne")
    assert [c.shape for c in proj.coords] == [(2, 2), (2, 2)]


def test_inputs_untouched():
    run = torch.randn(5, 6)
    before = run.clone()
    project_trajectories([run, run + 1.0])
    assert torch.equal(run, before)


def test_bad_input():
    run = random_walk(5, 6, seed=0)
    with pytest.raises(DlprobeError, match="same number of parameters"):
        project_trajectories([run, random_walk(5, 7, seed=1)])
    with pytest.raises(DlprobeError, match="unknown method 'umap'; valid: pca, pca\\+tsne"):
        project_trajectories([run], method="umap")
    with pytest.raises(DlprobeError, match="non-empty list"):
        project_trajectories([])
    with pytest.raises(DlprobeError, match="2-D array"):
        project_trajectories([run[0]])
    with pytest.raises(DlprobeError, match="n_components must be between 1 and 5"):
        project_trajectories([run], n_components=6)
    with pytest.raises(DlprobeError, match="NaN"):
        project_trajectories([np.full((3, 2), np.nan)])

"""Optimization trajectories of several runs projected into ONE common low-dimensional basis.

Each run contributes a sequence of parameter snapshots (T_r, P) (all parameters, or one
layer's). The snapshots of all runs are stacked and a single PCA is fitted to the stack,
so every run is drawn in the same coordinates. Fitting a PCA per run (a pitfall of
published solutions) puts each trajectory in its own basis: two runs that differ by a
constant offset would then land on top of each other.

``"pca+tsne"`` first reduces the stack with the common PCA, then embeds it with t-SNE,
which separates distinct minima (the presentation behind the homework) but keeps no
global geometry: distances between far-apart clusters mean little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dlprobe import DlprobeError

METHODS = ("pca", "pca+tsne")
TSNE_PERPLEXITY = 30.0  # sklearn's default, clipped below for small point sets


@dataclass(frozen=True)
class Projection:
    """Low-dimensional coordinates of every run's snapshots, all in one basis.

    ``coords[r]`` is (T_r, n_components) for run r, in the input order.
    ``explained_variance_ratio`` is the common PCA's (for ``"pca+tsne"``, of the PCA stage).
    """

    coords: list[np.ndarray]
    explained_variance_ratio: np.ndarray
    method: str


def _as_matrix(snapshot, index: int) -> np.ndarray:
    if isinstance(snapshot, torch.Tensor):
        snapshot = snapshot.detach().cpu().to(torch.float64).numpy()
    arr = np.asarray(snapshot, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DlprobeError(
            f"snapshots[{index}] must be a non-empty 2-D array (T, P) of flattened parameters, "
            f"got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise DlprobeError(f"snapshots[{index}] contains NaN or inf (a diverged run?)")
    return arr


def project_trajectories(
    snapshots: Sequence[np.ndarray | torch.Tensor],
    method: str = "pca",
    n_components: int = 2,
    pca_components_before_tsne: int = 10,
    seed: int = 0,
) -> Projection:
    """Project the snapshot sequences of several runs into one common low-dimensional basis.

    Args:
        snapshots: one array or tensor (T_r, P) per run: flattened parameters (or one
            layer's) collected during training; P must be the same for all runs.
        method: ``"pca"`` (one PCA fitted to all runs' snapshots stacked) or
            ``"pca+tsne"`` (that PCA to ``pca_components_before_tsne`` dimensions, then
            t-SNE with ``init="pca"`` and perplexity min(30, points - 1)).
        n_components: output dimensions (1-3 for t-SNE).
        pca_components_before_tsne: PCA dimensions fed to t-SNE (clipped to the data's rank
            bound min(points, P)).
        seed: random state of the randomized PCA solver and of t-SNE.

    Returns:
        ``Projection`` with one (T_r, n_components) array per run, in the input order.
    """
    if method not in METHODS:
        raise DlprobeError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    try:  # the lab's dependencies, not the probes': imported on first use
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        raise DlprobeError(
            "project_trajectories needs scikit-learn and threadpoolctl: pip install 'dlprobe[lab]'"
        ) from e
    if isinstance(snapshots, (np.ndarray, torch.Tensor)) or len(snapshots) == 0:
        raise DlprobeError("snapshots must be a non-empty list with one (T, P) array per run")
    runs = [_as_matrix(s, i) for i, s in enumerate(snapshots)]
    widths = {r.shape[1] for r in runs}
    if len(widths) != 1:
        raise DlprobeError(
            "all runs must have the same number of parameters P to share one basis, got "
            f"P = {[r.shape[1] for r in runs]}"
        )
    stacked = np.concatenate(runs)  # (sum T_r, P)
    n_points, n_params = stacked.shape
    if n_points < 2:
        raise DlprobeError("need at least 2 snapshots in all to fit a projection, got 1")
    max_components = min(n_points, n_params)
    max_out = max_components if method == "pca" else min(3, n_points - 1)
    if not 1 <= n_components <= max_out:
        raise DlprobeError(
            f"n_components must be between 1 and {max_out} for method {method!r} with "
            f"{n_points} snapshots of {n_params} parameters, got {n_components}"
        )

    if method == "pca":
        pca = PCA(n_components=n_components, random_state=seed)
        coords = pca.fit_transform(stacked)  # (sum T_r, n_components)
    else:
        if pca_components_before_tsne < 1:
            raise DlprobeError(
                f"pca_components_before_tsne must be >= 1, got {pca_components_before_tsne}"
            )
        k = min(pca_components_before_tsne, max_components)
        pca = PCA(n_components=k, random_state=seed)
        reduced = pca.fit_transform(stacked)  # (sum T_r, k)
        tsne = TSNE(
            n_components=n_components,
            perplexity=min(TSNE_PERPLEXITY, n_points - 1),
            init="pca",
            random_state=seed,
        )
        # t-SNE of a few thousand points gains nothing from threads, and OpenMP threads
        # waiting for a busy CPU make it up to 10x slower on a shared 2-core machine.
        with threadpool_limits(limits=1, user_api="openmp"):
            coords = tsne.fit_transform(reduced)  # (sum T_r, n_components)

    bounds = np.cumsum([0] + [r.shape[0] for r in runs])
    per_run = [coords[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return Projection(per_run, pca.explained_variance_ratio_, method)

"""optimization-trajectory: headline numbers, observations and settings for the report."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.common import sci
from dlprobe.experiments.optimization_trajectory.protocol import (
    TWIN,
    Config,
    distance_matrix,
    explained_variance,
)


def _finals(results: dict, metric: str) -> list[float]:
    last = results["snapshot_epochs"][-1]
    return [r[metric] for r in results["snapshots"] if r["epoch"] == last and r["event"] != TWIN]


def _event_distances(results: dict, aligned: bool) -> dict:
    """Distances between distinct events (pairs), from event 0, and of the twin to event 0."""
    k = len(results["seeds"])
    d = distance_matrix(results, aligned)
    return {
        "pairs": [d[i, j] for i in range(k) for j in range(i + 1, k)],
        "to_event_0": [d[0, j] for j in range(1, k)],
        "twin": d[0, k],
    }


def summarize(results: dict) -> dict:
    before, after = _event_distances(results, False), _event_distances(results, True)
    return {
        "final train accuracy, mean over events": float(
            np.mean(_finals(results, "train_accuracy"))
        ),
        "final test accuracy, mean over events": float(np.mean(_finals(results, "test_accuracy"))),
        "PCA variance in 2 components, whole model: as trained / aligned": [
            float(sum(explained_variance(results, "whole model", "pca", a)[:2]))
            for a in (False, True)
        ],
        "PCA variance in 2 components, first layer: as trained / aligned": [
            float(sum(explained_variance(results, "first layer", "pca", a)[:2]))
            for a in (False, True)
        ],
        "median L2 distance between events: as trained / aligned": [
            float(np.median(before["pairs"])),
            float(np.median(after["pairs"])),
        ],
        "twin's L2 distance to event 0: as trained / aligned": [before["twin"], after["twin"]],
        "max |output change| from alignment": max(
            r["max_abs_output_difference"] for r in results["alignment_check"]
        ),
    }


def observations(results: dict) -> list[str]:
    k = len(results["seeds"])
    t = len(results["snapshot_epochs"])
    train, test = _finals(results, "train_accuracy"), _finals(results, "test_accuracy")
    before, after = _event_distances(results, False), _event_distances(results, True)
    med_b, med_a = np.median(before["to_event_0"]), np.median(after["to_event_0"])
    pairs_b = np.median(before["pairs"])
    same = sum(d < 0.01 * pairs_b for d in after["pairs"])
    check = results["alignment_check"]
    lines = [
        f"After {results['snapshot_epochs'][-1]} epochs the {k} events reach training accuracy "
        f"{min(train):.3f}-{max(train):.3f} (test {min(test):.3f}-{max(test):.3f}).",
        f"One PCA basis fitted on all {(k + 1) * t} snapshots ({k} events and the twin, {t} "
        f"each): 2 components explain "
        f"{100 * sum(explained_variance(results, 'whole model', 'pca', False)[:2]):.1f}% of the "
        f"variance of the whole model and "
        f"{100 * sum(explained_variance(results, 'first layer', 'pca', False)[:2]):.1f}% of the "
        "first layer's.",
        f"As trained, the final weights of the {k} events are {min(before['pairs']):.2f}-"
        f"{max(before['pairs']):.2f} apart in L2 (median {pairs_b:.2f} over "
        f"{len(before['pairs'])} pairs); aligning hidden units to event 0 brings the median "
        f"distance to event 0 from {med_b:.2f} to {med_a:.2f} "
        f"({100 * (med_a / med_b - 1):+.0f}%) over {k - 1} events.",
        f"The permuted twin of event 0 computes the same function but lies {before['twin']:.2f} "
        f"from it as trained (the median distance between events is {pairs_b:.2f}); after "
        f"alignment it lies {sci(after['twin'])} from it.",
        f"{same} of the {len(after['pairs'])} pairs of distinct events are closer than 1% of "
        "the median distance after alignment, i.e. the same minimum up to a permutation of "
        "units; the others are different points even after removing the permutation symmetry.",
        f"Alignment changes no model's function: the largest output change over {len(check)} "
        f"final models is {sci(max(r['max_abs_output_difference'] for r in check))}, and "
        f"{sum(r['same_predictions'] for r in check)} of {len(check)} predict the same classes.",
    ]
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d = results["model"], results["dataset"]
    return [
        (
            "model",
            f"MLP {'-'.join(map(str, m['widths']))}, {m['activation']} ({m['params']} params; "
            f"{m['layer']}: {m['layer_params']} params)",
        ),
        ("data", f"{d['name']}: {d['n_train']} training / {d['n_test']} test examples"),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}, batch {cfg.batch_size or 'full'}"),
        ("epochs", f"{cfg.epochs}; weights, loss and accuracy every {cfg.snapshot_every_epochs}"),
        (
            "events",
            f"{cfg.seeds} seeds ({cfg.seed}..{cfg.seed + cfg.seeds - 1}) trained as one "
            f"population, plus event 0 with its hidden units randomly permuted (seed {cfg.seed})",
        ),
        (
            "projection",
            "one PCA fitted on all snapshots stacked (first layer; whole model); PCA to "
            f"{cfg.tsne_pca_components} dims then t-SNE",
        ),
        (
            "alignment",
            "each event's final model matched to event 0's layer by layer (Hungarian matching "
            "of incoming weights and bias); the same permutation applied to all its snapshots",
        ),
    ]

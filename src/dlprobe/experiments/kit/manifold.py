"""Probing models around the training data: triplets of training inputs, the ellipse
through three of them, and every model's accuracy before and after training."""

from __future__ import annotations

import math

import numpy as np
import torch

from dlprobe.data import Dataset
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.train import Population, default_loss, evaluate_population

PHASES = ("initial", "trained")  # probed at initialization, then after training
ANCHOR_T = (0.0, 2 * math.pi / 3, 4 * math.pi / 3)  # angles at which the ellipse meets x1..x3
CASES = ("same", "different")  # three inputs of the same class / of three classes
CASE_TITLES = {"same": "three inputs of the same class", "different": "three different classes"}
SENSITIVITY_CHUNK = 512  # points per vmapped Jacobian chunk (memory only)


def pick_triplets(labels: np.ndarray, n: int, same: bool, rng: np.random.Generator):
    """``n`` triplets of distinct training indices: one class thrice, or three classes."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    triplets = []
    for _ in range(n):
        if same:
            cls = rng.choice([c for c, idx in by_class.items() if len(idx) >= 3])
            idx = rng.choice(by_class[cls], size=3, replace=False)
        else:
            classes = rng.choice(list(by_class), size=3, replace=False)
            idx = np.array([rng.choice(by_class[c]) for c in classes])
        triplets.append([int(i) for i in idx])
    return triplets


def ellipse_through(x1: np.ndarray, x2: np.ndarray, x3: np.ndarray):
    """Center c and axes a, b of ``x(t) = c + a cos t + b sin t`` through x1, x2, x3.

    With the inputs at t = 0, 2π/3, 4π/3 the cosines and sines each sum to zero, so
    c is the mean of the three, a = x1 - c and b = (x2 - x3) / √3 (exact, not fitted).
    """
    c = (x1 + x2 + x3) / 3
    return c, x1 - c, (x2 - x3) / math.sqrt(3)


def ellipse_points(c: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points (len(t), D) of the ellipse at angles t."""
    return c + np.cos(t)[:, None] * a + np.sin(t)[:, None] * b


def accuracy_records(pop: Population, data: Dataset, phase: str, models: list[int]) -> list[dict]:
    """One record per model in ``models``: its training and test accuracy at this phase."""
    loss_fn = default_loss(data)
    _, train_acc = evaluate_population(pop, data.x_train, data.y_train, loss_fn)
    _, test_acc = evaluate_population(pop, data.x_test, data.y_test, loss_fn)
    return [
        {
            "phase": phase,
            "seed": pop.seeds[k],
            "train_accuracy": float(train_acc[k]),
            "test_accuracy": float(test_acc[k]),
        }
        for k in models
    ]


def probed_models(size: int, runs: list[dict]) -> list[int]:
    """Indices of the models worth probing: all ``size`` before training, those that did
    not diverge after (``runs``: the training's final records; empty before training)."""
    return [k for k in range(size) if not (runs and runs[k]["diverged"])]


def trained_test_accuracy(results: dict) -> float:
    """Mean test accuracy of the trained models that did not diverge (NaN if none)."""
    acc = [r["test_accuracy"] for r in results["accuracy"] if r["phase"] == "trained"]
    return float(np.mean(acc)) if acc else float("nan")


def ellipses_through_triplets(
    labels: np.ndarray, x_flat: np.ndarray, n: int, t: np.ndarray, seed: int
) -> tuple[list[dict], np.ndarray]:
    """``n`` ellipses per case (same-class triplets first) through training inputs.

    Returns one record per ellipse and their points (cases * n * len(t), D) at angles t.
    """
    rng = np.random.default_rng(seed)
    ellipses, points = [], []
    for case in CASES:
        for j, idx in enumerate(pick_triplets(labels, n, case == "same", rng)):
            c, a, b = ellipse_through(*x_flat[idx])
            ellipses.append(
                {
                    "case": case,
                    "ellipse": j,
                    "train_indices": idx,
                    "classes": [int(labels[i]) for i in idx],
                    "center": c.tolist(),
                    "a": a.tolist(),
                    "b": b.tolist(),
                }
            )
            points.append(ellipse_points(c, a, b, t))
    return ellipses, np.concatenate(points)


def jacobian_sensitivity_and_class(
    pop: Population, points: torch.Tensor, models: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian sensitivity (M, N) and predicted class (M, N) of the M ``models`` at points."""
    sens, pred = [], []
    for k in models:
        model = pop.model(k)
        s = sensitivity(model, points, definition="jacobian", batch_size=SENSITIVITY_CHUNK)
        sens.append(s.per_example.cpu().numpy())
        with torch.no_grad():
            model.eval()
            pred.append(model(points).argmax(-1).cpu().numpy())
    if not sens:
        return np.zeros((0, len(points))), np.zeros((0, len(points)), dtype=int)
    return np.stack(sens), np.stack(pred)


def near_anchors(t: np.ndarray, window: float) -> np.ndarray:
    """True where t is within ``window`` (circular distance) of an anchor angle."""
    d = np.abs(t[:, None] - np.array(ANCHOR_T)[None, :]) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d).min(axis=1) <= window + 1e-12


def angle_axis(ax) -> None:
    ax.set_xlim(0, 2 * math.pi)
    ax.set_xticks([0, 2 * math.pi / 3, 4 * math.pi / 3, 2 * math.pi])
    ax.set_xticklabels(["0", "2π/3", "4π/3", "2π"])
    ax.set_xlabel("angle t along the ellipse (radians)")
    ax.set_yscale("log")


def mark_anchors(ax, classes: list[int] | None = None) -> None:
    for i, t in enumerate(ANCHOR_T):
        ax.axvline(t, color="black", lw=1.2, ls=":")
        label = f"x{i + 1}" + (f" ({classes[i]})" if classes is not None else "")
        ax.annotate(label, (t, 0.0), xycoords=("data", "axes fraction"), xytext=(3, 3),
                    textcoords="offset points", fontsize=8)  # fmt: skip

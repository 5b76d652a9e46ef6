"""Kit helpers for trajectories, checked against brute force on tiny inputs."""

import numpy as np
import torch

from dlprobe.experiments.kit.trajectories import (
    distance_matrix,
    final_distance_rows,
    snapshot_rows,
    variance_shown,
)
from dlprobe.train import History


def test_final_distances_are_the_l2_distances_of_the_last_snapshots():
    gen = torch.Generator().manual_seed(0)
    trajectories = [torch.randn(4, 6, generator=gen) for _ in range(3)]  # (T, P) each
    names = ["a", "b", "c"]
    rows = final_distance_rows(trajectories, names, aligned=True)
    assert len(rows) == 9 and all(r["aligned"] for r in rows)
    d = distance_matrix(rows, names)
    for i in range(3):
        for j in range(3):
            expected = (trajectories[i][-1] - trajectories[j][-1]).norm().item()
            assert np.isclose(d[i, j], expected, atol=1e-5)


def test_snapshot_rows_take_epoch_0_from_the_initial_metrics():
    hist = History(seeds=[7, 8], epochs=[2, 4], train_loss=[[0.5, 0.6], [0.3, float("nan")]])
    hist.snapshot_epochs = [0, 4]
    rows = snapshot_rows(hist, {"train_loss": [1.0, 1.1]}, lambda k: f"event {k}")
    assert [(r["event"], r["seed"], r["epoch"], r["train_loss"]) for r in rows[:3]] == [
        ("event 0", 7, 0, 1.0),
        ("event 0", 7, 4, 0.3),
        ("event 1", 8, 0, 1.1),
    ]
    assert np.isnan(rows[3]["train_loss"])  # model 1 diverged: its metrics are NaN


def test_variance_shown_says_what_the_numbers_allow():
    assert variance_shown({"A": 0.95}) == "the A figure shows most of the points' spread"
    text = variance_shown({"A": 0.9, "B": 0.62})
    assert "B figure shows 62%" in text and text.endswith("points close in 2-D may be far apart")
    assert "shows less than half" in variance_shown({"A": 0.3})

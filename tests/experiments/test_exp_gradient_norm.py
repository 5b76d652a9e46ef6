import math

import pytest
import torch
from exp_util import assert_complete_run, assert_redraws, load_results, run_smoke

from dlprobe.data import function_dataset, load_dataset
from dlprobe.experiments.gradient_norm import PROFILES, observations, summarize
from dlprobe.models import build_model
from dlprobe.train import default_loss

FIGURES = ["grad-loss-function", "grad-loss-classification"]


def _rows(results, task, seed):
    rows = [r for r in results["steps"] if r["task"] == task and r["seed"] == seed]
    return sorted(rows, key=lambda r: r["iteration"])


def test_smoke_run_records_every_iteration(tmp_path):
    run = run_smoke("gradient-norm", tmp_path)
    assert_complete_run(run, FIGURES)
    results = load_results(run)
    cfg = PROFILES["smoke"]
    n_train = {"function": cfg.n_points, "classification": load_dataset(cfg.dataset).n_train}
    setting = {
        "function": (cfg.function_epochs, cfg.function_batch_size),
        "classification": (cfg.dataset_epochs, cfg.dataset_batch_size),
    }
    for task, (epochs, batch) in setting.items():
        steps = epochs * math.ceil(n_train[task] / (batch or n_train[task]))
        for seed in results["seeds"]:
            rows = _rows(results, task, seed)
            assert [r["iteration"] for r in rows] == list(range(1, steps + 1))
            assert all(r["grad_norm"] > 0 and r["loss"] > 0 for r in rows)
    assert_redraws(run)


def test_first_recorded_gradient_norm_equals_backward_on_the_initial_model(tmp_path):
    # one full-batch iteration: the record is the gradient at the seeded initialization
    run = run_smoke(
        "gradient-norm",
        tmp_path,
        "--function_epochs",
        "1",
        "--function_batch_size",
        "0",
        "--dataset_epochs",
        "1",
        "--dataset_batch_size",
        "0",
    )
    results = load_results(run)
    cfg = PROFILES["smoke"]
    data = {
        "function": function_dataset(cfg.function, cfg.n_points),
        "classification": load_dataset(cfg.dataset),
    }
    for task in results["tasks"]:
        d = data[task["task"]]
        assert task["steps_per_epoch"] == 1 and task["batch_size"] == d.n_train
        for seed in results["seeds"]:
            (row,) = _rows(results, task["task"], seed)
            torch.manual_seed(seed)
            model = build_model(task["spec"])
            loss = default_loss(d)(model(d.x_train), d.y_train)
            loss.backward()
            norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
            assert row["loss"] == pytest.approx(loss.item(), rel=1e-5)
            assert row["grad_norm"] == pytest.approx(norm.item(), rel=1e-4)


def test_statistics_on_a_known_sequence():
    # loss falls by halves except at every 4th iteration; grad norm = 2 * loss
    losses = [1.0]
    for i in range(1, 41):
        losses.append(losses[-1] * (1.5 if i % 4 == 0 else 0.5))
    steps = [
        {"task": "function", "seed": s, "iteration": i + 1, "loss": v, "grad_norm": 2 * v}
        for s in (0, 1)
        for i, v in enumerate(losses)
    ]
    results = {
        "tasks": [
            {
                "task": "function",
                "name": "f",
                "title": "f",
                "params": 1,
                "batch_size": 1,
                "diverged_seeds": [],
            }
        ],
        "steps": steps,
        "seeds": [0, 1],
    }
    summary = summarize(results)
    assert summary["function (f): fraction of iterations with a loss increase"] == pytest.approx(
        10 / 40
    )
    assert summary["function (f): Spearman r(grad norm, loss)"] == pytest.approx(1.0)
    start, peak, end = summary["function (f): grad norm at start / peak / end"]
    assert start == peak == 2.0 and end < start
    assert any("25%" in line for line in observations(results))

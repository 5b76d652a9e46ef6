import math

import numpy as np
import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.experiments.gradient_norm import EXPERIMENT, _moving_median, notes
from dlprobe.models import build_model
from dlprobe.train import default_loss

pytestmark = pytest.mark.xdist_group("gradient-norm")


def _rows(results, task, seed):
    rows = [r for r in results["steps"] if r["task"] == task and r["seed"] == seed]
    return sorted(rows, key=lambda r: r["iteration"])


def test_smoke_run_records_every_iteration(smoke):
    results = load_results(smoke("gradient-norm"))
    cfg = EXPERIMENT.make_config("smoke")
    n_train = {"function": cfg.n_points, "classification": load_dataset(cfg.dataset).n_train}
    setting = {"function": cfg.function_train, "classification": cfg.dataset_train}
    for task, train in setting.items():
        steps = train.epochs * math.ceil(n_train[task] / (train.batch_size or n_train[task]))
        for seed in results["seeds"]:
            rows = _rows(results, task, seed)
            assert [r["iteration"] for r in rows] == list(range(1, steps + 1))
            assert all(r["grad_norm"] > 0 and r["loss"] > 0 for r in rows)


def test_first_recorded_gradient_norm_equals_backward_on_the_initial_model(smoke):
    # one full-batch iteration: the record is the gradient at the seeded initialization
    run = smoke(
        "gradient-norm",
        *("--function_train.epochs", "1", "--function_train.batch_size", "0"),
        *("--dataset_train.epochs", "1", "--dataset_train.batch_size", "0"),
    )
    results = load_results(run)
    cfg = EXPERIMENT.make_config("smoke")
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
                "spec": {"kind": "mlp", "widths": [1, 1, 1], "activation": "relu"},
                "params": 1,
                "loss": "MSE",
                "n_train": 1,
                "batch_size": 1,
                "epochs": 40,
                "steps_per_epoch": 1,
            }
        ],
        "runs": [{"task": "function", "seed": s, "diverged": False} for s in (0, 1)],
        "steps": steps,
        "seeds": [0, 1],
    }
    summary = notes(results).summary
    assert summary["function (f): fraction of iterations with a loss increase"] == pytest.approx(
        10 / 40
    )
    assert summary["function (f): Spearman r(grad norm, loss)"] == pytest.approx(1.0)
    start, peak, end = summary["function (f): grad norm at start / peak / end"]
    assert start == peak == 2.0 and end < start
    # r = 1 comes with its confound: both fall with the iteration (r = -0.82 each)
    lines = notes(results).observations
    assert any("25%" in line for line in lines)
    assert any("both fall with training time" in line for line in lines)
    assert summary["function (f): Pearson r of their log changes per iteration"] == (
        pytest.approx(1.0)
    )
    # a diverged seed is named and left out: its NaN tail changes no statistic
    results["runs"][1].update(
        diverged=True, diverged_at_epoch=20, diverged_reason="non-finite loss"
    )
    for r in steps:
        if r["seed"] == 1 and r["iteration"] > 20:
            r["loss"] = r["grad_norm"] = float("nan")
    after = notes(results)
    assert after.summary == summary
    assert any("1 run(s) diverged" in line and "seed 1" in line for line in after.observations)
    # with no seed left there are no statistics, and the report says so
    results["runs"][0]["diverged"] = True
    assert any("every one of its runs diverged" in line for line in notes(results).observations)


def test_bad_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="1 input to 1 output"):
        EXPERIMENT.make_config(changes={"function_model": "1-8-2"})
    with pytest.raises(DlprobeError, match="function_train.batch_size must be in"):
        EXPERIMENT.make_config("smoke", {"function_train.batch_size": 65})
    with pytest.raises(DlprobeError, match="record_steps must be true"):
        EXPERIMENT.make_config(changes={"dataset_train.record_steps": False})
    with pytest.raises(DlprobeError, match="ambiguous"):
        EXPERIMENT.make_config(changes={"epochs": 3})


@pytest.mark.filterwarnings("ignore:All-NaN slice")
@pytest.mark.parametrize("window", [1, 2, 5, 51])
def test_moving_median_is_the_median_of_each_shrinking_window(window):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 3, 120))
    v[0, 1, 40:70] = np.nan  # a diverged stretch
    v[1, 2] = np.nan  # a run with no value
    half = window // 2
    for i in (0, 1, half, 60, 119):
        want = np.nanmedian(v[..., max(0, i - half) : i + half + 1], axis=-1)
        np.testing.assert_array_equal(_moving_median(v, window)[..., i], want)
